//! One scrape of an OpenSpeak process's `GET /metrics`: the data plane's
//! (`--metrics`) or the control plane's (`--control-metrics`), a plain
//! HTTP/1.1 request over a tokio `TcpStream`.
//!
//! A few requests per run (one per phase, one per `--timeline` row) do not
//! need an HTTP client library: the request is a fixed string with
//! `Connection: close`, and the response is read to its end, bounded in
//! size and, with the connecting, by
//! [`SCRAPE_TIMEOUT`]. `httparse` reads the response's head and chunk
//! sizes; making sense of it ([`parse_response`]) is pure and tested apart
//! from the socket.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::flags::parse_addr;
use crate::metrics::text::{DataplaneCounters, MetricsTextError, ProcessGauges, parse_samples};

/// Bound on one scrape, connecting included. The data plane answers from
/// its counters at once (its own bound on asking the router is 2 s too).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest response read. The data plane's is a few kB; anything this
/// big is not it.
const MAX_RESPONSE: u64 = 4 << 20;

/// Why a scrape gave no counters.
#[derive(Debug, Error)]
pub enum ScrapeError {
    /// `--metrics` is not `HOST:PORT` or `http://HOST:PORT[/]`.
    #[error("`{0}` is not HOST:PORT or http://HOST:PORT")]
    BadAddress(String),
    /// No answer within [`SCRAPE_TIMEOUT`].
    #[error("timed out after {}s", SCRAPE_TIMEOUT.as_secs())]
    TimedOut,
    /// Connecting, writing or reading failed.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// The response was not HTTP/1.x.
    #[error("not an HTTP response")]
    NotHttp,
    /// The server answered, but not 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// A chunked body that does not follow the chunk format.
    #[error("malformed chunked body")]
    BadChunks,
    /// The body was not UTF-8 text.
    #[error("the body is not UTF-8")]
    NotText,
    /// The body was not the Prometheus text format.
    #[error("not the Prometheus text format")]
    Format(#[from] MetricsTextError),
}

/// `HOST:PORT` from `--metrics`, which may also be given as a URL, read as
/// `--addr` is.
pub fn metrics_authority(given: &str) -> Result<String, ScrapeError> {
    // A path other than `/metrics` (or none) would be a different endpoint.
    let address = given.strip_suffix("/metrics").unwrap_or(given);
    parse_addr(address).map_err(|_| ScrapeError::BadAddress(given.to_owned()))
}

/// Scrapes the data plane's counters at `http://{authority}/metrics` once.
pub async fn scrape(authority: &str) -> Result<DataplaneCounters, ScrapeError> {
    let body = scrape_text(authority).await?;
    Ok(DataplaneCounters::from_samples(&parse_samples(&body)?))
}

/// Scrapes any OpenSpeak process's `process_*` gauges at
/// `http://{authority}/metrics` once.
pub async fn scrape_process(authority: &str) -> Result<ProcessGauges, ScrapeError> {
    let body = scrape_text(authority).await?;
    Ok(ProcessGauges::from_samples(&parse_samples(&body)?))
}

/// The text of `http://{authority}/metrics`, once.
async fn scrape_text(authority: &str) -> Result<String, ScrapeError> {
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {authority}\r\nAccept: text/plain\r\n\
             User-Agent: openspeak-loadtest\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .map_err(|_| ScrapeError::TimedOut)??;
    parse_response(&response)
}

/// The body of a complete HTTP/1.x response (the connection closed after
/// it), when the status is 200.
pub fn parse_response(response: &[u8]) -> Result<String, ScrapeError> {
    // The data plane sends a handful of headers; more than this is not it.
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) =
        head.parse(response).map_err(|_| ScrapeError::NotHttp)?
    else {
        return Err(ScrapeError::NotHttp);
    };
    match head.code {
        Some(200) => {}
        Some(status) => return Err(ScrapeError::Status(status)),
        None => return Err(ScrapeError::NotHttp),
    }
    let header = |name: &str| {
        let found = head
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name));
        found.map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let raw = &response[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(raw)?
    } else if let Some(length) = header("content-length") {
        let n: usize = length.parse().map_err(|_| ScrapeError::NotHttp)?;
        raw.get(..n).ok_or(ScrapeError::NotHttp)?.to_vec()
    } else {
        // Neither: the body runs to the close.
        raw.to_vec()
    };
    String::from_utf8(body).map_err(|_| ScrapeError::NotText)
}

/// Joins a chunked body's chunks. Bounded: each turn consumes its chunk.
fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, ScrapeError> {
    let mut body = Vec::new();
    loop {
        // The size line, chunk extensions and its CRLF included.
        let Ok(httparse::Status::Complete((line_len, size))) = httparse::parse_chunk_size(raw)
        else {
            return Err(ScrapeError::BadChunks);
        };
        raw = &raw[line_len..];
        if size == 0 {
            return Ok(body);
        }
        let size = usize::try_from(size).map_err(|_| ScrapeError::BadChunks)?;
        let chunk = raw.get(..size).ok_or(ScrapeError::BadChunks)?;
        body.extend_from_slice(chunk);
        raw = raw
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or(ScrapeError::BadChunks)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_may_be_a_url() {
        for given in [
            "127.0.0.1:9101",
            "http://127.0.0.1:9101",
            "http://127.0.0.1:9101/",
            "http://127.0.0.1:9101/metrics",
        ] {
            assert_eq!(
                metrics_authority(given).unwrap(),
                "127.0.0.1:9101",
                "{given}"
            );
        }
        assert_eq!(metrics_authority("[::1]:9101").unwrap(), "[::1]:9101");
        for bad in [
            "127.0.0.1",
            "https://h:1",
            "h:99999",
            ":1",
            "http://h:1/other",
        ] {
            assert!(metrics_authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_200_gives_its_body_by_length_chunks_or_close() {
        let by_length = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nm 1\n\nextra";
        assert_eq!(parse_response(by_length).unwrap(), "m 1\n\n");
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nm 1\n\r\n3;x=y\r\nn 2\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), "m 1\nn 2");
        let to_close = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nm 1\n";
        assert_eq!(parse_response(to_close).unwrap(), "m 1\n");
    }

    #[test]
    fn anything_else_is_an_error() {
        // Each response and the error it must give, by the error's words
        // (one per variant, with the status code).
        for (response, want) in [
            (
                &b"HTTP/1.1 503 Service Unavailable\r\n\r\n"[..],
                ScrapeError::Status(503),
            ),
            (b"SSH-2.0-OpenSSH\r\n\r\n", ScrapeError::NotHttp),
            (b"HTTP/1.1 200 OK\r\n", ScrapeError::NotHttp),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nm 1",
                ScrapeError::NotHttp,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ScrapeError::BadChunks,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n\xff\xfe", ScrapeError::NotText),
        ] {
            let got = parse_response(response).expect_err("not a 200 with a body");
            assert_eq!(
                (std::mem::discriminant(&got), got.to_string()),
                (std::mem::discriminant(&want), want.to_string()),
                "{}",
                String::from_utf8_lossy(response)
            );
        }
    }

    #[tokio::test]
    async fn a_scrape_reads_the_counters_from_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            let body = "openspeak_dataplane_datagrams_forwarded_total 42\n";
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            request
        });
        let counters = scrape(&addr).await.unwrap();
        assert_eq!(counters.forwarded, 42);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /metrics HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Connection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn nobody_listening_is_an_io_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(matches!(scrape(&addr).await, Err(ScrapeError::Io(_))));
    }
}
