//! Connections that never speak: on the public gRPC port and on the
//! internal link's, a connection that sends nothing is closed after
//! `server.handshake_timeout`, no more than `server.max_connections` are
//! open at once, and real clients get in again as soon as places are free.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use openspeak_shared::config::Seconds;
use support::{TestServer, within};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const MAX: usize = 8;

async fn server() -> TestServer {
    TestServer::start_with(|config| {
        config.server.max_connections = MAX;
        config.server.handshake_timeout = Seconds(1);
    })
    .await
}

/// Waits until the server closes `stream` without a word.
async fn closed_silently(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 16];
    match within(what, stream.read(&mut buf)).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{what}: the server sent {n} bytes instead of closing"),
    }
}

/// Fills `addr`'s places with silent connections; the one beyond them is
/// closed at once, and all of them once the handshake timeout has passed.
async fn silent_connections_are_capped_and_closed(addr: SocketAddr) {
    let mut silent = Vec::new();
    for _ in 0..MAX {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = tokio::time::Instant::now();
    let mut extra = TcpStream::connect(addr).await.unwrap();
    closed_silently(&mut extra, "the connection beyond the cap is closed").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed at once, not after the handshake timeout: {:?}",
        started.elapsed()
    );
    for stream in &mut silent {
        closed_silently(stream, "a silent connection is closed").await;
    }
}

#[tokio::test]
async fn silent_connections_to_the_public_port_are_capped_and_closed_then_clients_get_in() {
    let server = server().await;
    silent_connections_are_capped_and_closed(server.addr).await;
    let admin = server.admin().await;
    let who = within("WhoAmI after the flood", admin.whoami())
        .await
        .expect("a real client gets in once the silent ones are gone");
    assert_eq!(who.role, openspeak_shared::pb::Role::Admin as i32);
}

#[tokio::test]
async fn silent_connections_to_the_internal_link_are_capped_and_closed() {
    let server = server().await;
    silent_connections_are_capped_and_closed(server.cluster_addr).await;
    // The public side never noticed.
    let admin = server.admin().await;
    within("WhoAmI", admin.whoami()).await.unwrap();
}
