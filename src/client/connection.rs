//! One connection to one broker: ApiVersions on connect, then request/response exchanges in
//! order (the CLI never pipelines).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ClientError;

/// Largest response frame accepted (a Fetch answer is bounded by the request's max_bytes).
const MAX_RESPONSE: usize = 256 << 20;
const CLIENT_ID: &str = "weir-cli";

pub struct KafkaConnection {
    stream: TcpStream,
    addr: String,
    timeout: Duration,
    next_correlation: i32,
    /// The broker's supported version range per API key.
    versions: HashMap<i16, (i16, i16)>,
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KafkaConnection({})", self.addr)
    }
}

impl KafkaConnection {
    /// Connects to `addr` (host:port) and asks which API versions it serves.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<KafkaConnection, ClientError> {
        let targets: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|source| ClientError::Resolve {
                addr: addr.to_string(),
                source,
            })?
            .collect();
        let mut last = None;
        let mut connected = None;
        for target in targets {
            match tokio::time::timeout(timeout, TcpStream::connect(target)).await {
                Ok(Ok(stream)) => {
                    connected = Some(stream);
                    break;
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(std::io::ErrorKind::TimedOut.into()),
            }
        }
        let stream = connected.ok_or_else(|| ClientError::Connect {
            addr: addr.to_string(),
            source: last.unwrap_or_else(|| std::io::Error::other("no address")),
        })?;
        let _ = stream.set_nodelay(true);
        let mut connection = KafkaConnection {
            stream,
            addr: addr.to_string(),
            timeout,
            next_correlation: 1,
            versions: HashMap::new(),
        };
        connection.negotiate().await?;
        Ok(connection)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// ApiVersions v3 (v0 if the broker does not know v3, as KIP-511 answers).
    async fn negotiate(&mut self) -> Result<(), ClientError> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str(CLIENT_ID);
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut response: ApiVersionsResponse = self.send_at(&request, 3).await?;
        if response.error_code == kafka_protocol::ResponseError::UnsupportedVersion.code() {
            response = self.send_at(&ApiVersionsRequest::default(), 0).await?;
        }
        ClientError::check(response.error_code, None, || {
            format!("{}: ApiVersions", self.addr)
        })?;
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// Whether the broker serves `key` at all.
    pub fn serves(&self, key: ApiKey) -> bool {
        self.versions.contains_key(&(key as i16))
    }

    /// The newest version both sides speak, capped at `cap` (versions whose new fields this
    /// client does not fill are not worth the risk of encoding them wrongly).
    pub fn version<R: Request>(&self, cap: i16) -> Result<i16, ClientError> {
        let ours = R::VERSIONS;
        let key = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let unsupported = |min, max| ClientError::Unsupported {
            addr: self.addr.clone(),
            api: key,
            min,
            max,
        };
        let &(min, max) = self
            .versions
            .get(&R::KEY)
            .ok_or_else(|| unsupported(ours.min, ours.max))?;
        let version = max.min(ours.max).min(cap);
        if version < min.max(ours.min) {
            return Err(unsupported(min, max));
        }
        Ok(version)
    }

    /// Sends `request` at the newest common version up to `cap` and returns the response.
    pub async fn send<R: Request>(
        &mut self,
        request: &R,
        cap: i16,
    ) -> Result<(i16, R::Response), ClientError> {
        let version = self.version::<R>(cap)?;
        Ok((version, self.send_at(request, version).await?))
    }

    /// Sends `request` at `version`.
    pub async fn send_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let key = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = self.encode(key, request, version, correlation_id)?;
        let timeout = self.timeout;
        let addr = self.addr.clone();
        let reply = tokio::time::timeout(timeout, self.exchange(&frame)).await;
        let mut body = match reply {
            Ok(result) => result?,
            Err(_) => return Err(ClientError::Timeout { addr, timeout }),
        };
        let decode_error = |e: anyhow::Error| ClientError::Decode {
            addr: self.addr.clone(),
            api: key,
            version,
            message: e.to_string(),
        };
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(decode_error)?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Correlation {
                addr: self.addr.clone(),
                got: header.correlation_id,
                expected: correlation_id,
            });
        }
        R::Response::decode(&mut body, version).map_err(decode_error)
    }

    /// Sends `request` and reads nothing back: a Produce with acks=0 gets no response.
    pub async fn send_without_response<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<(), ClientError> {
        let key = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame = self.encode(key, request, version, correlation_id)?;
        let addr = self.addr.clone();
        self.stream
            .write_all(&frame)
            .await
            .map_err(|source| ClientError::Io { addr, source })
    }

    fn encode<R: Request>(
        &self,
        key: ApiKey,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ClientError> {
        let encode_error = |e: anyhow::Error| ClientError::Encode {
            addr: self.addr.clone(),
            api: key,
            version,
            message: e.to_string(),
        };
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(StrBytes::from_static_str(CLIENT_ID));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(encode_error)?;
        request.encode(&mut buf, version).map_err(encode_error)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf.freeze())
    }

    async fn exchange(&mut self, frame: &[u8]) -> Result<Bytes, ClientError> {
        let addr = self.addr.clone();
        let io = |source| ClientError::Io {
            addr: addr.clone(),
            source,
        };
        self.stream.write_all(frame).await.map_err(io)?;
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix).await.map_err(io)?;
        let size = i32::from_be_bytes(prefix);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_RESPONSE {
            return Err(ClientError::TooLarge {
                addr: self.addr.clone(),
                size,
                max: MAX_RESPONSE,
            });
        }
        let mut body = BytesMut::zeroed(size);
        self.stream.read_exact(&mut body).await.map_err(io)?;
        Ok(body.freeze())
    }
}
