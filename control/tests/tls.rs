//! The public listener over TLS: a client that trusts the server's
//! certificate works as over plaintext; one that speaks plaintext to it
//! gets nowhere. Each test makes its own certificate.

mod support;

use std::fs;

use openspeak_shared::pb::{self, auth_service_client::AuthServiceClient};
use support::{TestServer, with_token};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A self-signed certificate for `localhost`, written as PEM files into
/// the server's data directory; returns the certificate's PEM.
fn self_signed(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
    let cert_pem = cert.cert.pem();
    let cert_path = dir.join("tls-cert.pem");
    let key_path = dir.join("tls-key.pem");
    fs::write(&cert_path, &cert_pem).unwrap();
    fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_pem, cert_path, key_path)
}

/// A control plane whose public listener serves TLS with a
/// [`self_signed`] certificate in `dir`; returns it and the certificate's
/// PEM.
async fn tls_server(dir: &std::path::Path) -> (TestServer, String) {
    let (cert_pem, cert, key) = self_signed(dir);
    let server = TestServer::start_with(|c| {
        c.server.tls_cert = Some(cert);
        c.server.tls_key = Some(key);
    })
    .await;
    (server, cert_pem)
}

#[tokio::test]
async fn a_client_trusting_the_certificate_is_served_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert_pem) = tls_server(dir.path()).await;

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(cert_pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("a TLS connection to the server");
    let me = AuthServiceClient::new(channel)
        .who_am_i(with_token(&server.admin_token, pb::WhoAmIRequest {}))
        .await
        .expect("WhoAmI over TLS")
        .into_inner();
    assert_eq!(me.role, pb::Role::Admin as i32);
}

#[tokio::test]
async fn a_plaintext_client_is_not_served_by_a_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = tls_server(dir.path()).await;

    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", server.addr.port()))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(5));
    let outcome = match plain.connect().await {
        Err(_) => None,
        Ok(channel) => Some(
            AuthServiceClient::new(channel)
                .who_am_i(with_token(&server.admin_token, pb::WhoAmIRequest {}))
                .await,
        ),
    };
    assert!(
        !matches!(outcome, Some(Ok(_))),
        "plaintext must not be answered by a TLS listener: {outcome:?}"
    );
}

#[tokio::test]
async fn a_missing_key_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, _) = self_signed(dir.path());
    let mut config = support::test_config(dir.path(), Some(&support::random_secret("test")));
    config.server.tls_cert = Some(cert);
    config.server.tls_key = Some(dir.path().join("missing-key.pem"));
    let error = match openspeak_control::ControlPlane::bind(config).await {
        Ok(_) => panic!("a missing key file must stop start-up"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("missing-key.pem"), "{error}");
    assert!(error.contains("server.tls_key"), "{error}");
}

/// `server.tls_self_signed`: the control plane makes its certificate on
/// first start and keeps it, so the file a client was told to trust
/// still works after a restart; a client that trusts only the public
/// authorities gets nowhere.
#[tokio::test]
async fn a_self_signed_certificate_is_made_once_and_trusted_by_its_file_across_restarts() {
    use openspeak_client::Client;
    use openspeak_control::{SELF_SIGNED_CERT_FILE, SELF_SIGNED_KEY_FILE};
    use openspeak_shared::identity::TlsIdentity;

    let (dir, token, mut config) = openspeak_testkit::fresh_config();
    config.server.tls_self_signed = true;
    let cert = dir.path().join(SELF_SIGNED_CERT_FILE);
    let key = dir.path().join(SELF_SIGNED_KEY_FILE);
    assert!(!cert.exists());

    let mut server = TestServer::serve(config.clone()).await;
    let cert_pem = fs::read(&cert).expect("the certificate is in the data directory");
    let fingerprint = TlsIdentity::from_pem_files(&cert, &key)
        .unwrap()
        .fingerprint();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key is the owner's alone");
    }
    // The certificate names localhost and the loopback addresses.
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}", server.addr.port());
        let me = Client::connect_with_ca(&url, &token, &cert_pem)
            .await
            .unwrap_or_else(|e| panic!("{url} with its certificate trusted: {e:?}"))
            .whoami()
            .await
            .expect("WhoAmI over TLS");
        assert_eq!(me.role, pb::Role::Admin as i32);
    }
    let url = format!("https://localhost:{}", server.addr.port());
    let untrusted = match Client::connect(&url, &token).await {
        Ok(client) => client.whoami().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(
        untrusted.is_err(),
        "a client trusting only the public authorities must be refused"
    );
    server.stop().await;

    let again = TestServer::serve(config).await;
    assert_eq!(fs::read(&cert).unwrap(), cert_pem, "the same certificate");
    assert_eq!(
        TlsIdentity::from_pem_files(&cert, &key)
            .unwrap()
            .fingerprint(),
        fingerprint
    );
    let url = format!("https://localhost:{}", again.addr.port());
    Client::connect_with_ca(&url, &token, &cert_pem)
        .await
        .expect("the file trusted before the restart still works")
        .whoami()
        .await
        .expect("WhoAmI after the restart");
}

/// The internal link with certificates from `cluster init` (mutual TLS):
/// a real data plane holding its certificate attaches; a peer with a
/// certificate from another authority, one with none, one that does not
/// trust the control plane's authority, and one speaking plaintext are
/// all kept out, whatever secret they know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_link_takes_only_data_planes_the_cluster_authority_signed() {
    use openspeak_control::cluster_ca::{self, CA_CERT, CONTROL_CERT, CONTROL_KEY};
    use openspeak_shared::pb::cluster::cluster_service_client::ClusterServiceClient;
    use tonic::transport::Identity;

    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    cluster_ca::init(ours.path(), &[], &["dp1".into()]).unwrap();
    cluster_ca::init(theirs.path(), &[], &["dp1".into()]).unwrap();
    let secret = support::random_secret("cluster");

    let (_dir, _token, mut config) = openspeak_testkit::fresh_config();
    config.cluster.secret = Some(secret.clone());
    config.cluster.tls_cert = Some(ours.path().join(CONTROL_CERT));
    config.cluster.tls_key = Some(ours.path().join(CONTROL_KEY));
    config.cluster.tls_ca = Some(ours.path().join(CA_CERT));
    let server = TestServer::serve(config).await;
    let link = format!("https://localhost:{}", server.cluster_addr.port());

    // A real data plane attaches, with a certificate issued after `init`
    // (`cluster issue`) from the same authority.
    cluster_ca::issue(ours.path(), "dp2").unwrap();
    let (dp_dir, _, mut dp) = openspeak_testkit::fresh_config();
    let (dp2_cert, dp2_key) = cluster_ca::dataplane_files("dp2");
    let (cert, key) = cluster_ca::dataplane_files("dp1");
    dp.cluster.control_addr = link.clone();
    dp.cluster.secret = Some(secret.clone());
    dp.cluster.tls_cert = Some(ours.path().join(&dp2_cert));
    dp.cluster.tls_key = Some(ours.path().join(&dp2_key));
    dp.cluster.tls_ca = Some(ours.path().join(CA_CERT));
    dp.storage.data_dir = dp_dir.path().to_owned();
    let attached = openspeak_testkit::serve_attached_dataplane(dp).await;

    // Everyone else, at the handshake or the first call.
    let pem = |dir: &std::path::Path, file: &str| fs::read(dir.join(file)).unwrap();
    let tls = |trust: &std::path::Path, me: Option<&std::path::Path>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem(trust, CA_CERT)))
            .domain_name("localhost");
        if let Some(me) = me {
            tls = tls.identity(Identity::from_pem(pem(me, &cert), pem(me, &key)));
        }
        Some(tls)
    };
    let plaintext = format!("http://127.0.0.1:{}", server.cluster_addr.port());
    for (what, url, tls) in [
        (
            "another authority's certificate",
            &link,
            tls(ours.path(), Some(theirs.path())),
        ),
        ("no certificate", &link, tls(ours.path(), None)),
        (
            "trusting another authority",
            &link,
            tls(theirs.path(), Some(ours.path())),
        ),
        ("plaintext", &plaintext, None),
    ] {
        let mut endpoint = Endpoint::from_shared(url.clone())
            .unwrap()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let outcome = match endpoint.connect().await {
            Err(e) => Err(e.to_string()),
            Ok(channel) => {
                let (reports, rx) = tokio::sync::mpsc::channel(1);
                reports
                    .send(support::register("intruder", &"ab".repeat(32), 10))
                    .await
                    .unwrap();
                let request = with_token(&secret, tokio_stream::wrappers::ReceiverStream::new(rx));
                match ClusterServiceClient::new(channel).attach(request).await {
                    Err(status) => Err(status.to_string()),
                    Ok(response) => response
                        .into_inner()
                        .message()
                        .await
                        .map(|m| m.is_some())
                        .map_err(|s| s.to_string()),
                }
            }
        };
        assert!(
            !matches!(outcome, Ok(true)),
            "{what}: must be kept out, got {outcome:?}"
        );
    }
    // Only the real one is there.
    let status = server.admin().await.server_status().await.unwrap();
    assert_eq!(status.dataplanes.len(), 1, "{status:?}");
    assert_ne!(status.dataplanes[0].id, "intruder");
    drop(attached);
}
