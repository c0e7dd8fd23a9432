//! ApiVersions: the API table, and KIP-511 client software validation.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::codec::api_versions_body;

pub fn handle(version: i16, request: &ApiVersionsRequest) -> ApiVersionsResponse {
    if version >= 3
        && !(valid_software_field(&request.client_software_name)
            && valid_software_field(&request.client_software_version))
    {
        return api_versions_body(ResponseError::InvalidRequest.code());
    }
    api_versions_body(0)
}

/// KIP-511: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`
fn valid_software_field(value: &str) -> bool {
    let bytes = value.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn validates_client_software_fields() {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("librdkafka");
        request.client_software_version = StrBytes::from_static_str("2.6.1");
        assert_eq!(handle(3, &request).error_code, 0);
        request.client_software_version = StrBytes::from_static_str("2.6.1 beta");
        assert_eq!(handle(3, &request).error_code, 42);
        assert_eq!(handle(2, &request).error_code, 0);
    }
}
