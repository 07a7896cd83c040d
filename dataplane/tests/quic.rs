//! The QUIC building blocks over real sockets on 127.0.0.1: the pinned
//! handshake, ALPN, DATAGRAM frames both ways, and a certificate that keeps
//! its fingerprint across restarts.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use openspeak_dataplane::{CERT_FILE, DataplaneCert, KEY_FILE};
use openspeak_voice::{ALPN, PinError, client_config, parse_pin, server_config};
use quinn::{Connection, ConnectionError, Endpoint};
use tokio::time::timeout;

/// Every wait in these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);

/// The largest forwarded voice datagram (`docs/PROTOCOL.md`).
const MAX_FORWARDED: usize = 1013;

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn server(cert: &DataplaneCert) -> (Endpoint, SocketAddr) {
    let endpoint = Endpoint::server(
        server_config(cert.certified_key()).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    (endpoint, addr)
}

/// Connects a fresh client endpoint pinned to `pin`; returns the client's
/// result and the server's, whichever way each went.
async fn connect(
    server: &Endpoint,
    addr: SocketAddr,
    pin: [u8; 32],
) -> (
    Endpoint,
    Result<Connection, ConnectionError>,
    Result<Connection, ConnectionError>,
) {
    let client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = client
        .connect_with(client_config(pin).unwrap(), addr, "localhost")
        .unwrap();
    let accepting = async {
        let incoming = server.accept().await.expect("server endpoint closed");
        incoming.await
    };
    let (client_side, server_side) =
        within("handshake", async { tokio::join!(connecting, accepting) }).await;
    (client, client_side, server_side)
}

fn alpn(connection: &Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// A server on a fresh certificate and a client pinned to it, both
/// handshakes done. The directory and endpoints are kept so that the
/// connections live as long as this.
struct Pinned {
    client: Connection,
    server: Connection,
    _endpoints: (Endpoint, Endpoint),
    _dir: tempfile::TempDir,
}

impl Pinned {
    async fn connect() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = DataplaneCert::load_or_generate(dir.path()).unwrap();
        let (server, addr) = server(&cert);
        let (client, client_side, server_side) = connect(&server, addr, cert.sha256()).await;
        Pinned {
            client: client_side.expect("client handshake"),
            server: server_side.expect("server handshake"),
            _endpoints: (client, server),
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn pinned_client_connects_and_exchanges_datagrams() {
    let pinned = Pinned::connect().await;
    let (client_conn, server_conn) = (&pinned.client, &pinned.server);

    assert_eq!(alpn(client_conn).as_deref(), Some(ALPN));
    assert_eq!(alpn(server_conn).as_deref(), Some(ALPN));
    assert_eq!(ALPN, b"openspeak-voice/1");

    // Both sides may send the largest voice datagram.
    let client_max = client_conn.max_datagram_size().expect("datagrams enabled");
    let server_max = server_conn.max_datagram_size().expect("datagrams enabled");
    assert!(client_max >= MAX_FORWARDED, "client max {client_max}");
    assert!(server_max >= MAX_FORWARDED, "server max {server_max}");

    let voice = Bytes::from_static(&[0x01, 0, 0, 0x03, 0xe8, 0, 0x01, 0xe2, 0x40, 0xaa]);
    client_conn.send_datagram(voice.clone()).unwrap();
    let got = within("datagram to server", server_conn.read_datagram())
        .await
        .unwrap();
    assert_eq!(got, voice);

    let forwarded = Bytes::from(vec![0x02; MAX_FORWARDED]);
    server_conn.send_datagram(forwarded.clone()).unwrap();
    let got = within("datagram to client", client_conn.read_datagram())
        .await
        .unwrap();
    assert_eq!(got, forwarded);

    client_conn.close(0u32.into(), b"done");
    let closed = within("close seen by server", server_conn.closed()).await;
    assert!(
        matches!(closed, ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_wrong_pin_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let cert = DataplaneCert::load_or_generate(dir.path()).unwrap();
    let (server, addr) = server(&cert);

    let mut wrong = cert.sha256();
    wrong[0] ^= 0x80;
    let (_client, client_side, server_side) = connect(&server, addr, wrong).await;

    let err = client_side.expect_err("client must refuse the server");
    assert!(err.to_string().contains("NotThePinnedCertificate"), "{err}");
    assert!(server_side.is_err(), "the server must not see a connection");
}

#[tokio::test]
async fn another_servers_certificate_fails_the_handshake() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let pinned = DataplaneCert::load_or_generate(ours.path()).unwrap();
    let impostor = DataplaneCert::load_or_generate(theirs.path()).unwrap();
    let (server, addr) = server(&impostor);

    let (_client, client_side, _) = connect(&server, addr, pinned.sha256()).await;
    assert!(client_side.is_err());
}

#[tokio::test]
async fn a_reloaded_certificate_keeps_its_fingerprint_and_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let first = DataplaneCert::load_or_generate(dir.path()).unwrap();
    let fingerprint = first.fingerprint();
    drop(first);

    let reloaded = DataplaneCert::load_or_generate(dir.path()).unwrap();
    assert_eq!(reloaded.fingerprint(), fingerprint);
    let operator =
        DataplaneCert::from_pem_files(&dir.path().join(CERT_FILE), &dir.path().join(KEY_FILE))
            .unwrap();
    assert_eq!(operator.fingerprint(), fingerprint);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }

    // A client holding the pin from before the "restart" still connects.
    let (server, addr) = server(&reloaded);
    let (_client, client_side, server_side) =
        connect(&server, addr, parse_pin(&fingerprint).unwrap()).await;
    client_side.expect("client handshake");
    server_side.expect("server handshake");
}

#[test]
fn malformed_pins_are_errors() {
    assert_eq!(parse_pin("abc"), Err(PinError::Length(3)));
    assert_eq!(parse_pin(&"g".repeat(64)), Err(PinError::NotHex));
    let dir = tempfile::tempdir().unwrap();
    let cert = DataplaneCert::load_or_generate(dir.path()).unwrap();
    assert_eq!(parse_pin(&cert.fingerprint()), Ok(cert.sha256()));
}

#[tokio::test]
async fn the_server_asks_clients_to_ack_less_often() {
    let pinned = Pinned::connect().await;
    let (client_conn, server_conn) = (&pinned.client, &pinned.server);

    // Voice-like traffic: one small datagram per packet, spaced out so
    // that quinn cannot coalesce them.
    const PACKETS: u64 = 100;
    let acks_before = client_conn.stats().frame_tx.acks;
    let sending = async {
        for sequence in 0..PACKETS {
            server_conn
                .send_datagram(Bytes::from(sequence.to_be_bytes().to_vec()))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let receiving = async {
        for _ in 0..PACKETS {
            client_conn.read_datagram().await.unwrap();
        }
    };
    within("100 datagrams", async { tokio::join!(sending, receiving) }).await;
    let acks = client_conn.stats().frame_tx.acks - acks_before;

    assert!(client_conn.stats().frame_rx.ack_frequency >= 1);
    // Without the extension the client would ACK every second packet
    // (about 50 ACKs); asked to wait for 10, it sends about 10.
    assert!(
        acks < 30,
        "the client sent {acks} ACKs for {PACKETS} packets"
    );
}
