//! Plain HTTP/1.1 requests to the operators' listeners (`/metrics`,
//! `/healthz`, `/readyz`), written by hand so that a test sees exactly
//! what a scraper or a health check would.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::within;

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The status line and headers, lowercased.
    pub head: String,
    pub body: String,
}

/// `GET path` over a fresh connection that asks the server to close it
/// after the answer, read to its end; bounded by [`crate::WAIT`].
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    within(&format!("GET {path}"), async {
        let mut stream = TcpStream::connect(addr).await.expect("a connection");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("the request is sent");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("the answer is read");
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head}"));
        Reply {
            status,
            head: head.to_lowercase(),
            body: body.to_owned(),
        }
    })
    .await
}
