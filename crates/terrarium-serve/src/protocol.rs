//! The framed protocol between the HTTP front and a Python worker, over a unix socket.
//!
//! Each frame, in both directions: a 4-byte big-endian length and a JSON header, then a 4-byte
//! big-endian length and the body bytes. The body is raw, so request and response payloads are
//! never re-encoded. The Python side is `python/terrarium_worker/__init__.py`.

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
    pub headers: Vec<(String, String)>,
    pub remote_addr: Option<String>,
}

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
        status: u16,
        headers: Vec<(String, String)>,
        exec_ms: f64,
    },
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
    let message = serde_json::from_slice(&header)
        .map_err(|err| invalid(format!("a frame header that is not a message: {err}")))?;
    Ok(Some((message, body)))
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
                assert_eq!((id.as_str(), status), ("r1", 201));
                assert_eq!(headers, vec![("Content-Type".into(), "text/plain".into())]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(body, b"hello");
        assert!(read_frame(&mut b).await.unwrap().is_none());
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
