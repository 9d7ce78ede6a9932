//! A small HTTP/1.1 client for the control plane, used by the `iotjobs-local` client verbs,
//! `watch`, the demo and the tests. Plain HTTP to a loopback endpoint is all it needs, so
//! it is a few lines over a `TcpStream` (one request per connection, `Connection: close`)
//! rather than a full HTTP stack. Errors the service returns come back as
//! [`ClientError::Api`] with the AWS exception name from `x-amzn-ErrorType`.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (job lists of a big fleet stay far below this).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {0:?}: only http://HOST:PORT endpoints are supported")]
    Endpoint(String),
    #[error("cannot reach {endpoint}: {source} (is `iotjobs-local serve` running?)")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{endpoint}: {source}")]
    Io {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{endpoint}: no response within {TIMEOUT:?}")]
    Timeout { endpoint: String },
    #[error("{endpoint}: malformed HTTP response: {reason}")]
    Malformed { endpoint: String, reason: String },
    /// The service answered with an AWS error.
    #[error("{kind} ({status}): {message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
}

/// A raw response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`null` when empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Percent-encodes one path segment or query value (everything but RFC 3986 unreserved).
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `?k=v&...` from the pairs whose value is set.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Client of one endpoint (`http://127.0.0.1:8088`).
#[derive(Debug, Clone)]
pub struct ApiClient {
    endpoint: String,
    authority: String,
}

impl ApiClient {
    pub fn new(endpoint: &str) -> Result<Self, ClientError> {
        let rest = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Endpoint(endpoint.to_owned()))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(ClientError::Endpoint(endpoint.to_owned()));
        }
        Ok(ApiClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            authority: authority.to_owned(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one request and returns the raw response, whatever its status.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        self.send_with(method, path_and_query, &[], body).await
    }

    /// [`Self::send`] with extra request headers (e.g. a SigV4 `Authorization`).
    pub async fn send_with(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let exchange = self.exchange(method, path_and_query, headers, body);
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: self.endpoint.clone(),
            })?
    }

    async fn exchange(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let io = |source| ClientError::Io {
            endpoint: self.endpoint.clone(),
            source,
        };
        let mut stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ClientError::Connect {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            self.authority
        );
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        req.push_str(&payload);
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(io)?;
        parse_response(&raw).map_err(|reason| ClientError::Malformed {
            endpoint: self.endpoint.clone(),
            reason,
        })
    }

    /// Sends a request; a 2xx returns the JSON body (`{}` when empty), anything else
    /// becomes [`ClientError::Api`].
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.call_with(method, path_and_query, &[], body).await
    }

    /// [`Self::call`] with extra request headers (e.g. AttachThingPrincipal's
    /// `x-amzn-principal`).
    pub async fn call_with(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let resp = self
            .send_with(method, path_and_query, headers, body)
            .await?;
        if (200..300).contains(&resp.status) {
            return Ok(match resp.json() {
                Value::Null => Value::Object(Default::default()),
                v => v,
            });
        }
        let json = resp.json();
        let kind = resp
            .header("x-amzn-errortype")
            .map(|k| k.split(':').next().unwrap_or(k).to_owned())
            .unwrap_or_else(|| format!("HTTP {}", resp.status));
        let message = json["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).into_owned());
        Err(ClientError::Api {
            status: resp.status,
            kind,
            message,
        })
    }

    pub async fn get(&self, path_and_query: &str) -> Result<Value, ClientError> {
        self.call("GET", path_and_query, None).await
    }

    /// Follows `nextToken` until the last page and concatenates the `key` arrays.
    pub async fn get_all(&self, path: &str, key: &str) -> Result<Vec<Value>, ClientError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &token {
                Some(t) => format!("{path}{sep}nextToken={}", enc(t)),
                None => path.to_owned(),
            };
            let v = self.get(&url).await?;
            if let Some(items) = v[key].as_array() {
                out.extend(items.iter().cloned());
            }
            match v["nextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    if raw.len() > MAX_RESPONSE {
        return Err(format!("response larger than {MAX_RESPONSE} bytes"));
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        match headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
        {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err("body shorter than Content-Length".into()),
            None => rest.to_vec(),
        }
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nX-Amzn-ErrorType: ResourceNotFoundException\r\ncontent-length: 15\r\n\r\n{\"message\":\"x\"}",
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(
            r.header("x-amzn-errortype"),
            Some("ResourceNotFoundException")
        );
        assert_eq!(r.json()["message"], "x");
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.json()["a"], 1);
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}").is_err());
    }

    #[test]
    fn encodes_segments_and_queries() {
        assert_eq!(enc("$next"), "%24next");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(
            query(&[("force", Some("true".into())), ("x", None)]),
            "?force=true"
        );
        assert_eq!(query(&[("x", None)]), "");
        assert!(ApiClient::new("https://h:1").is_err());
        assert!(ApiClient::new("http://127.0.0.1:8088/").is_ok());
    }
}
