//! The framed protocol between the HTTP front and a Python worker, over a unix socket.
//!
//! Each frame, in both directions: a 4-byte big-endian length and a header, then a 4-byte
//! big-endian length and the body bytes. The body is raw, so request and response payloads are
//! never re-encoded. Headers are JSON, except the worker's most common answer, a JSON response,
//! which is packed ([`COMPACT_RESPONSE`]). The Python side is `python/terrarium_worker/__init__.py`.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Headers are small; a larger one means a confused peer.
const MAX_HEADER: u32 = 16 * 1024 * 1024;
/// Bodies are bounded by the front's request limit; responses by this.
const MAX_BODY: u32 = 1024 * 1024 * 1024;

/// What the front asks a worker.
#[derive(Debug, Clone, Serialize)]
pub struct RequestHeader {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    /// `score` (the entry script's run()) or `invocations` (MLflow's contract).
    pub route: &'static str,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Sent only to workers whose run() reads them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
}

/// The first byte of a packed JSON response header (a JSON header starts with `{`): then the
/// status (u16), run()'s time in ms (f64), whether run() failed (u8), all big-endian, and the
/// request's id (UTF-8, the rest).
pub const COMPACT_RESPONSE: u8 = 1;

/// What a worker says.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    Hello {
        worker: usize,
        pid: u32,
        #[serde(default)]
        version: String,
    },
    Ready {
        /// Whether run() reads the request's headers (`@rawhttp`, `request_headers`, MLflow);
        /// when it does not, requests are sent without them.
        #[serde(default = "yes")]
        needs_headers: bool,
    },
    InitFailed {
        reason: String,
    },
    Response {
        id: String,
        status: Status,
        headers: Vec<(String, String)>,
        exec_ms: f64,
    },
}

/// A response's status as the worker sent it: any JSON number, so that one that is no HTTP
/// status (an `AMLResponse` of 70000, say) is a bad answer to one request, not a broken channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Status(serde_json::Number);

impl Status {
    /// The HTTP status, if it is one: three digits, as the `http` crate takes them.
    pub fn http(&self) -> Option<u16> {
        let code = u16::try_from(self.0.as_u64()?).ok()?;
        (100..=999).contains(&code).then_some(code)
    }
}

impl From<u16> for Status {
    fn from(code: u16) -> Status {
        Status(code.into())
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn yes() -> bool {
    true
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    header: &impl Serialize,
    body: &[u8],
) -> std::io::Result<()> {
    let header = serde_json::to_vec(header).map_err(std::io::Error::other)?;
    let mut head = Vec::with_capacity(header.len() + 8);
    head.extend_from_slice(&(header.len() as u32).to_be_bytes());
    head.extend_from_slice(&header);
    head.extend_from_slice(&(body.len() as u32).to_be_bytes());
    // One write for a small frame: a request is usually a single segment on the socket.
    if body.len() < 64 * 1024 {
        head.extend_from_slice(body);
        writer.write_all(&head).await?;
    } else {
        writer.write_all(&head).await?;
        writer.write_all(body).await?;
    }
    writer.flush().await
}

/// The next frame, or `None` when the peer closed the channel between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<(WorkerMessage, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let header_len = u32::from_be_bytes(len);
    if header_len > MAX_HEADER {
        return Err(invalid(format!("a frame header of {header_len} bytes")));
    }
    let mut header = vec![0u8; header_len as usize];
    reader.read_exact(&mut header).await?;
    reader.read_exact(&mut len).await?;
    let body_len = u32::from_be_bytes(len);
    if body_len > MAX_BODY {
        return Err(invalid(format!("a frame body of {body_len} bytes")));
    }
    let mut body = vec![0u8; body_len as usize];
    reader.read_exact(&mut body).await?;
    let message = match header.first() {
        Some(&COMPACT_RESPONSE) => compact_response(&header)?,
        _ => serde_json::from_slice(&header)
            .map_err(|err| invalid(format!("a frame header that is not a message: {err}")))?,
    };
    Ok(Some((message, body)))
}

fn compact_response(header: &[u8]) -> std::io::Result<WorkerMessage> {
    if header.len() < 12 {
        return Err(invalid(format!(
            "a packed response header of {} bytes",
            header.len()
        )));
    }
    let status = u16::from_be_bytes([header[1], header[2]]);
    let exec_ms = f64::from_be_bytes(header[3..11].try_into().expect("8 bytes"));
    let failed = if header[11] != 0 { "True" } else { "False" };
    let id = String::from_utf8(header[12..].to_vec())
        .map_err(|_| invalid("a packed response id that is not UTF-8".into()))?;
    Ok(WorkerMessage::Response {
        id,
        status: status.into(),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("x-ms-run-function-failed".into(), failed.into()),
        ],
        exec_ms,
    })
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_eof_between_frames_is_none() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let header = serde_json::json!({"type": "response", "id": "r1", "status": 201,
            "headers": [["Content-Type", "text/plain"]], "exec_ms": 0.5});
        write_frame(&mut a, &header, b"hello").await.unwrap();
        drop(a);
        let (message, body) = read_frame(&mut b).await.unwrap().unwrap();
        match message {
            WorkerMessage::Response {
                id,
                status,
                headers,
                ..
            } => {
                assert_eq!((id.as_str(), status.http()), ("r1", Some(201)));
                assert_eq!(headers, vec![("Content-Type".into(), "text/plain".into())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(body, b"hello");
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }

    /// What the Python worker packs for a JSON response (`_JSON_RESPONSE.pack(1, 500, 0.25,
    /// True) + id`) reads as the response with the usual headers.
    #[tokio::test]
    async fn packed_json_responses_read_as_responses() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let mut header = vec![COMPACT_RESPONSE];
        header.extend_from_slice(&500u16.to_be_bytes());
        header.extend_from_slice(&0.25f64.to_be_bytes());
        header.push(1);
        header.extend_from_slice(b"req-1");
        let mut frame = (header.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&2u32.to_be_bytes());
        frame.extend_from_slice(b"{}");
        frame.extend_from_slice(&[0, 0, 0, 3, COMPACT_RESPONSE, 0, 200, 0, 0, 0, 0]);
        a.write_all(&frame).await.unwrap();
        drop(a);
        match read_frame(&mut b).await.unwrap().unwrap() {
            (
                WorkerMessage::Response {
                    id,
                    status,
                    headers,
                    exec_ms,
                },
                body,
            ) => {
                assert_eq!(
                    (id.as_str(), status.http(), exec_ms),
                    ("req-1", Some(500), 0.25)
                );
                assert_eq!(
                    headers[1],
                    ("x-ms-run-function-failed".into(), "True".into())
                );
                assert_eq!(body, b"{}");
            }
            other => panic!("{other:?}"),
        }
        // A packed header too short to hold its fields.
        assert!(read_frame(&mut b).await.is_err());
    }

    /// A status that is no HTTP status still reads as a response (which the pool answers with
    /// 500): it used to make the frame unreadable, and the worker was killed.
    #[tokio::test]
    async fn any_numeric_status_reads_and_only_http_ones_are_http() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let statuses = [
            "70000",
            "1000",
            "99",
            "-5",
            "200.0",
            "1e30",
            "18446744073709551616",
            "200",
            "999",
        ];
        for status in statuses {
            let header = format!(
                r#"{{"type": "response", "id": "r", "status": {status}, "headers": [], "exec_ms": 1.0}}"#
            );
            let header: serde_json::Value = serde_json::from_str(&header).unwrap();
            write_frame(&mut a, &header, b"").await.unwrap();
        }
        drop(a);
        let mut read = Vec::new();
        while let Some((message, _)) = read_frame(&mut b).await.unwrap() {
            match message {
                WorkerMessage::Response { status, .. } => read.push(status.http()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(read.len(), statuses.len());
        assert_eq!(read[..7], [None; 7]);
        assert_eq!(read[7..], [Some(200), Some(999)]);
    }

    #[tokio::test]
    async fn a_truncated_frame_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&10u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{\"ty").await.unwrap();
        drop(a);
        assert!(read_frame(&mut b).await.is_err());
    }
}
