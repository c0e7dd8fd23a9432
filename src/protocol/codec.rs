//! The Kafka codec, without sockets: frame boundaries, request header + body decoding by api
//! key and version, and response encoding. Works on `Bytes`/`BytesMut` only so it can be
//! unit-tested and fuzzed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use super::api_table;
use super::response_frame::{ResponseFrame, Spliced};

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("frame length {0} is negative")]
    NegativeLength(i32),
    #[error("frame of {size} bytes exceeds socket_request_max_bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("request shorter than its header")]
    ShortHeader,
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("{key:?} v{version} is not supported")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("malformed {key:?} v{version} request: {message}")]
    Malformed {
        key: ApiKey,
        version: i16,
        message: String,
    },
    #[error("cannot encode {key:?} v{version} response: {message}")]
    Encode {
        key: ApiKey,
        version: i16,
        message: String,
    },
}

/// Checks a frame's 4-byte length prefix before anything is allocated for its body.
pub fn frame_length(prefix: [u8; 4], max: usize) -> Result<usize, CodecError> {
    let size = i32::from_be_bytes(prefix);
    let size = usize::try_from(size).map_err(|_| CodecError::NegativeLength(size))?;
    if size > max {
        return Err(CodecError::TooLarge { size, max });
    }
    Ok(size)
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// The outcome of decoding one frame.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// ApiVersions at a version this broker does not know (KIP-511): answered with a v0 body
    /// carrying UNSUPPORTED_VERSION and the supported ranges; the body is not decoded.
    ApiVersionsTooNew {
        correlation_id: i32,
    },
}

/// Decodes one request frame (without its length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::ShortHeader);
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|()| CodecError::UnknownApiKey(raw_key))?;
    if !api_table::is_served(key, version) {
        if key == ApiKey::ApiVersions && version > 0 {
            return Ok(Decoded::ApiVersionsTooNew { correlation_id });
        }
        return Err(CodecError::UnsupportedVersion { key, version });
    }
    let malformed = |e: anyhow::Error| CodecError::Malformed {
        key,
        version,
        message: e.to_string(),
    };
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(malformed)?;
    let body = RequestKind::decode(key, &mut frame, version).map_err(malformed)?;
    Ok(Decoded::Request(Box::new(Request {
        key,
        version,
        header,
        body,
    })))
}

/// Encodes a response frame, size prefix first. The record sets `spliced` stands for (a
/// Fetch response's larger ones, markers in the body) stay runs of their own
/// (`response_frame`); anything else is one contiguous buffer.
pub fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: ResponseKind,
    spliced: Option<Spliced>,
) -> Result<ResponseFrame, CodecError> {
    let Some(spliced) = spliced.filter(|s| !s.is_empty()) else {
        return encode_whole(key, version, correlation_id, &body).map(ResponseFrame::whole);
    };
    let frame = encode_whole(key, version, correlation_id, &body)?;
    let flexible = key == ApiKey::Fetch && version >= FETCH_FIRST_FLEXIBLE;
    match spliced.splice(frame, flexible) {
        Ok(frame) => Ok(frame),
        // A marker was not where it belongs: never send a frame that might be wrong.
        Err(spliced) => {
            let ResponseKind::Fetch(fetch) = &mut body else {
                return Err(CodecError::Encode {
                    key,
                    version,
                    message: "record runs outside a Fetch response".into(),
                });
            };
            spliced.restore(fetch).map_err(|e| CodecError::Encode {
                key,
                version,
                message: format!("reading records back: {e}"),
            })?;
            encode_whole(key, version, correlation_id, &body).map(ResponseFrame::whole)
        }
    }
}

/// The first Fetch version with flexible (compact) encoding.
const FETCH_FIRST_FLEXIBLE: i16 = 12;

/// Encodes a response into one buffer.
pub(super) fn encode_whole(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, CodecError> {
    let encode_error = |e: anyhow::Error| CodecError::Encode {
        key,
        version,
        message: e.to_string(),
    };
    // A Fetch response carries megabytes of records: sized up front, they are copied into
    // the frame once instead of again at every doubling of the buffer (each into fresh pages).
    let body_size = match body {
        ResponseKind::Fetch(fetch) => fetch.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(64 + body_size);
    buf.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut buf, key.response_header_version(version))
        .map_err(encode_error)?;
    body.encode(&mut buf, version).map_err(encode_error)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// The ApiVersions body listing every API of the table.
pub fn api_versions_body(error_code: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = error_code;
    response.api_keys = api_table::APIS
        .iter()
        .map(|api| {
            let mut version =
                kafka_protocol::messages::api_versions_response::ApiVersion::default();
            version.api_key = api.key as i16;
            version.min_version = api.min;
            version.max_version = api.max;
            version
        })
        .collect();
    response
}

/// The KIP-511 answer to an ApiVersions request at an unknown version: v0 body, header v0.
pub fn encode_api_versions_fallback(correlation_id: i32) -> Result<ResponseFrame, CodecError> {
    let body = api_versions_body(kafka_protocol::ResponseError::UnsupportedVersion.code());
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        ResponseKind::ApiVersions(body),
        None,
    )
}

/// Reads the header fields a log line needs from a frame that failed to decode.
pub fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let mut b = frame.get(..8)?;
    Some((b.get_i16(), b.get_i16(), b.get_i32()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::StrBytes;

    fn request_frame(key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
        let mut buf = BytesMut::new();
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = 7;
        header.client_id = Some(StrBytes::from_static_str("test"));
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn frame_length_is_checked_before_allocation() {
        assert_eq!(frame_length(10i32.to_be_bytes(), 100).unwrap(), 10);
        assert!(matches!(
            frame_length((-1i32).to_be_bytes(), 100),
            Err(CodecError::NegativeLength(-1))
        ));
        assert!(matches!(
            frame_length(101i32.to_be_bytes(), 100),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn decodes_api_versions_at_every_served_version() {
        for version in 0..=4 {
            let frame = request_frame(
                ApiKey::ApiVersions,
                version,
                &RequestKind::ApiVersions(ApiVersionsRequest::default()),
            );
            match decode_request(frame).unwrap() {
                Decoded::Request(request) => {
                    assert_eq!(request.version, version);
                    assert_eq!(request.header.correlation_id, 7);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_versions_and_keys() {
        let mut frame = BytesMut::new();
        frame.put_i16(18);
        frame.put_i16(99);
        frame.put_i32(42);
        frame.put_slice(b"garbage");
        assert!(matches!(
            decode_request(frame.freeze()).unwrap(),
            Decoded::ApiVersionsTooNew { correlation_id: 42 }
        ));
        let mut frame = BytesMut::new();
        frame.put_i16(9999);
        frame.put_i16(0);
        frame.put_i32(1);
        assert!(matches!(
            decode_request(frame.freeze()),
            Err(CodecError::UnknownApiKey(9999))
        ));
        let mut frame = BytesMut::new();
        frame.put_i16(0);
        frame.put_i16(2);
        frame.put_i32(1);
        assert!(matches!(
            decode_request(frame.freeze()),
            Err(CodecError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3])),
            Err(CodecError::ShortHeader)
        ));
    }

    #[test]
    fn truncated_body_is_malformed_not_a_panic() {
        let frame = request_frame(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(Default::default()),
        );
        for cut in 8..frame.len() {
            let _ = decode_request(frame.slice(..cut));
        }
    }

    #[test]
    fn fallback_is_a_v0_body_with_error_35() {
        let mut frame = encode_api_versions_fallback(5).unwrap().to_bytes().unwrap();
        let size = frame.get_i32();
        assert_eq!(size as usize, frame.len());
        assert_eq!(frame.get_i32(), 5);
        let body = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert!(
            body.api_keys
                .iter()
                .any(|k| k.api_key == 18 && k.max_version == 4)
        );
    }
}
