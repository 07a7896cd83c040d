//! The client library against a control plane that serves TLS with a
//! certificate no public authority signed: trusted through a CA file, it
//! works as over plaintext; without it, or with another CA, it is refused
//! at the handshake; a CA file with an `http://` address is a mistake that
//! is named. Each test makes its own certificates.

use openspeak_client::{Client, ClientError, pb};
use openspeak_control::ControlPlane;
use openspeak_testkit::{random_secret, spawn_serving, test_config, within};
use tokio::sync::oneshot;

/// A self-signed certificate for `localhost`: its PEM and its key's PEM.
fn self_signed() -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}

/// A control plane serving TLS on 127.0.0.1 with a fresh self-signed
/// certificate: its `https://localhost:PORT` address, admin token and
/// certificate PEM.
async fn tls_server(dir: &std::path::Path) -> (String, String, String, oneshot::Sender<()>) {
    let (cert_pem, key_pem) = self_signed();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let admin = random_secret("admin");
    let mut config = test_config(&dir.join("data"), Some(&admin));
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(key);
    let control = ControlPlane::bind(config).await.expect("binds with TLS");
    let url = format!("https://localhost:{}", control.local_addr().port());
    let (stop, _) = spawn_serving(|shutdown| control.serve(shutdown));
    (url, admin, cert_pem, stop)
}

#[tokio::test]
async fn a_client_with_the_ca_file_is_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (url, admin, cert_pem, _stop) = tls_server(dir.path()).await;
    let client = within(
        "connect over TLS",
        Client::connect_with_ca(&url, &admin, cert_pem.as_bytes()),
    )
    .await
    .expect("the CA file is trusted");
    let me = within("WhoAmI", client.whoami()).await.unwrap();
    assert_eq!(me.role, pb::Role::Admin as i32);
    let session = within("Connect", client.start_session("over tls"))
        .await
        .expect("a session over TLS");
    assert!(session.id() > 0);
}

#[tokio::test]
async fn without_the_ca_or_with_another_the_handshake_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (url, admin, _, _stop) = tls_server(dir.path()).await;

    let untrusted = within("connect without the CA", Client::connect(&url, &admin)).await;
    assert!(
        matches!(untrusted, Err(ClientError::Connect { .. })),
        "an unknown issuer is refused: {untrusted:?}"
    );
    let (other_ca, _) = self_signed();
    let other = within(
        "connect with another CA",
        Client::connect_with_ca(&url, &admin, other_ca.as_bytes()),
    )
    .await;
    assert!(
        matches!(other, Err(ClientError::Connect { .. })),
        "another CA is refused: {other:?}"
    );
}

#[tokio::test]
async fn a_ca_file_with_a_plaintext_address_is_named_as_the_mistake() {
    let (cert_pem, _) = self_signed();
    let refused = Client::connect_with_ca("http://127.0.0.1:1", "token", cert_pem.as_bytes()).await;
    let Err(error) = refused else {
        panic!("a CA file with http:// was accepted");
    };
    assert!(
        matches!(error, ClientError::TlsNeedsHttps { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("https://"), "{error}");
}
