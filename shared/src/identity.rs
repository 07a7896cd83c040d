//! A TLS identity kept in the data directory: one certificate and its key,
//! generated and self-signed on first start and loaded on every start
//! after, so that what clients trust or pin survives restarts. The data
//! plane's QUIC listener (pinned by the certificate's SHA-256) and the
//! control plane's public listener with `server.tls_self_signed` (trusted
//! as its own CA) both use it.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::persist;
use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Where an identity lives in its directory and what a generated
/// certificate says.
#[derive(Debug, Clone)]
pub struct SelfSigned<'a> {
    /// The certificate's file name.
    pub cert_file: &'a str,
    /// The private key's file name.
    pub key_file: &'a str,
    /// What the certificate is for (`data plane`), for a human reading it
    /// or the log.
    pub common_name: &'a str,
    /// The names (DNS names or IP addresses) a generated certificate is
    /// valid for: what a client that checks names may dial.
    pub names: Vec<String>,
}

/// A certificate and its key, ready to serve.
///
/// The key is parsed and checked against the certificate when it is loaded,
/// so a `TlsIdentity` always makes a working server config.
#[derive(Clone)]
pub struct TlsIdentity {
    /// Chain, leaf first, with the key already loaded by the ring provider.
    key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf's DER bytes: what clients pin.
    sha256: [u8; 32],
}

/// Why a certificate could not be loaded or created.
#[derive(Debug, Error)]
pub enum CertError {
    /// A certificate or key file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// A generated certificate or key could not be written.
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// The file is not valid PEM.
    #[error("{path} is not valid PEM: {source}")]
    Pem { path: PathBuf, source: pem::Error },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate in {path}")]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key block.
    #[error("no private key in {path}")]
    NoKey { path: PathBuf },
    /// The key is of a kind the ring provider cannot sign with, or the
    /// certificate cannot be parsed.
    #[error("unusable key or certificate in {path}: {source}")]
    Unusable {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The key does not belong to the certificate.
    #[error("the key in {key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The certificate exists without its key, so it cannot be served; it
    /// is not replaced, because it may be the operator's.
    #[error("found {cert} but not its key {key}")]
    MissingKey { cert: PathBuf, key: PathBuf },
    /// A key without a certificate could not be given a new one.
    #[error("cannot make a certificate for the key in {path}: {source}")]
    CertifyKey { path: PathBuf, source: rcgen::Error },
    /// rcgen failed to generate a key or certificate.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl TlsIdentity {
    /// Loads `how.cert_file` and `how.key_file` from `dir`, or, on first
    /// start, generates a self-signed certificate and writes both there
    /// (creating `dir`), so the fingerprint survives restarts.
    ///
    /// The key is written before the certificate, each atomically. A crash
    /// between the two leaves a key without a certificate: no client has
    /// seen a fingerprint yet, so a new certificate is made for that key.
    /// A certificate without its key is an error.
    ///
    /// Give each process its own files: two processes generating into the
    /// same ones at the same time could pair one's key with the other's
    /// certificate (the next load would then fail with
    /// [`CertError::KeyMismatch`]).
    pub fn load_or_generate(dir: &Path, how: &SelfSigned<'_>) -> Result<Self, CertError> {
        let cert_path = dir.join(how.cert_file);
        let key_path = dir.join(how.key_file);
        match (exists(&cert_path)?, exists(&key_path)?) {
            (true, true) => Self::from_pem_files(&cert_path, &key_path),
            (true, false) => Err(CertError::MissingKey {
                cert: cert_path,
                key: key_path,
            }),
            (false, true) => {
                let cert = rcgen::KeyPair::from_pem(&read_to_string(&key_path)?)
                    .and_then(|key_pair| self_signed(&key_pair, how))
                    .map_err(|source| CertError::CertifyKey {
                        path: key_path.clone(),
                        source,
                    })?;
                write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
                tracing::warn!(
                    key = %key_path.display(),
                    "the key had no certificate; made a new one for it"
                );
                Self::read_back_generated(&cert_path, &key_path, how)
            }
            (false, false) => {
                let key_pair = rcgen::KeyPair::generate()?;
                let cert = self_signed(&key_pair, how)?;
                write_atomic(&key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
                write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
                Self::read_back_generated(&cert_path, &key_path, how)
            }
        }
    }

    /// Loads an operator-supplied certificate chain (leaf first) and its
    /// private key (PKCS#8, PKCS#1 or SEC1), both PEM. Their validity dates
    /// and names are not checked: clients pin the leaf's hash instead.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let chain = CertificateDer::pem_slice_iter(&read(cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CertError::Pem {
                path: cert.to_owned(),
                source,
            })?;
        let Some(leaf) = chain.first() else {
            return Err(CertError::NoCertificate {
                path: cert.to_owned(),
            });
        };
        let sha256 = Sha256::digest(leaf).into();

        let key_der = match PrivateKeyDer::from_pem_slice(&read(key)?) {
            Ok(key_der) => key_der,
            Err(pem::Error::NoItemsFound) => {
                return Err(CertError::NoKey {
                    path: key.to_owned(),
                });
            }
            Err(source) => {
                return Err(CertError::Pem {
                    path: key.to_owned(),
                    source,
                });
            }
        };
        warn_if_readable_by_others(key);

        let signing_key = ring::default_provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|source| CertError::Unusable {
                path: key.to_owned(),
                source,
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(CertError::KeyMismatch {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                });
            }
            Err(source) => {
                return Err(CertError::Unusable {
                    path: cert.to_owned(),
                    source,
                });
            }
        }

        Ok(Self {
            key: Arc::new(certified),
            sha256,
        })
    }

    /// The pin: SHA-256 of the leaf certificate's DER bytes, as 64
    /// lowercase hex digits (`OpenVoiceResponse.cert_sha256`).
    pub fn fingerprint(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The pin as bytes, as the voice crate's `client_config` takes it.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// The chain and key: the identity the voice crate's `server_config`
    /// takes.
    pub fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.key)
    }

    /// Loads what was just written, so a generated certificate goes
    /// through exactly the checks a loaded one does.
    fn read_back_generated(
        cert_path: &Path,
        key_path: &Path,
        how: &SelfSigned<'_>,
    ) -> Result<Self, CertError> {
        let cert = Self::from_pem_files(cert_path, key_path)?;
        tracing::info!(
            path = %cert_path.display(),
            fingerprint = %cert.fingerprint(),
            "generated a self-signed certificate for the {}", how.common_name
        );
        Ok(cert)
    }
}

impl fmt::Debug for TlsIdentity {
    /// Shows the fingerprint, never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// A self-signed certificate for `key_pair`. rcgen's default validity
/// (1975 to 4096) is kept: nothing checks it, and a generated certificate
/// should never expire under a running deployment.
fn self_signed(
    key_pair: &rcgen::KeyPair,
    how: &SelfSigned<'_>,
) -> Result<rcgen::Certificate, rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(how.names.clone())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("OpenSpeak {}", how.common_name),
    );
    params.self_signed(key_pair)
}

fn exists(path: &Path) -> Result<bool, CertError> {
    path.try_exists().map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_to_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// An operator's key file readable by group or others is their choice, but
/// worth a line in the log.
fn warn_if_readable_by_others(path: &Path) {
    if let Some(mode) = persist::readable_by_others(path) {
        tracing::warn!(path = %path.display(), mode = format_args!("{mode:o}"), "private key file is readable by others");
    }
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    persist::write_atomic(path, contents, mode).map_err(|source| CertError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT_FILE: &str = "test_cert.pem";
    const KEY_FILE: &str = "test_key.pem";

    fn how() -> SelfSigned<'static> {
        SelfSigned {
            cert_file: CERT_FILE,
            key_file: KEY_FILE,
            common_name: "test",
            names: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }

    #[test]
    fn generates_once_then_loads_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        let cert_pem = fs::read(dir.path().join(CERT_FILE)).unwrap();
        let second = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(fs::read(dir.path().join(CERT_FILE)).unwrap(), cert_pem);
        let fingerprint = first.fingerprint();
        assert_eq!(fingerprint.len(), 64);
        assert!(
            fingerprint
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        assert_eq!(hex::decode(&fingerprint).unwrap(), first.sha256());
    }

    #[test]
    fn fingerprint_is_the_sha256_of_the_leaf_der() {
        let dir = tempfile::tempdir().unwrap();
        let cert = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        let pem = fs::read(dir.path().join(CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let expected: [u8; 32] = Sha256::digest(&der).into();
        assert_eq!(cert.sha256(), expected);
        assert_eq!(cert.certified_key().cert[0], der);
    }

    #[test]
    fn creates_the_directory_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data/sub");
        TlsIdentity::load_or_generate(&data, &how()).unwrap();
        let mut names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [CERT_FILE, KEY_FILE]);
    }

    #[test]
    fn a_key_without_its_certificate_gets_a_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        let key_pem = fs::read(dir.path().join(KEY_FILE)).unwrap();
        fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
        let second = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        assert_eq!(fs::read(dir.path().join(KEY_FILE)).unwrap(), key_pem);
        let third = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        assert_eq!(second.fingerprint(), third.fingerprint());
        // Same key, new certificate, so a new pin.
        assert_ne!(first.fingerprint(), second.fingerprint());
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let err = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap_err();
        assert!(matches!(err, CertError::MissingKey { .. }), "{err}");
        assert!(err.to_string().contains(KEY_FILE), "{err}");
        assert!(dir.path().join(CERT_FILE).exists());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        TlsIdentity::load_or_generate(a.path(), &how()).unwrap();
        TlsIdentity::load_or_generate(b.path(), &how()).unwrap();
        let err = TlsIdentity::from_pem_files(&a.path().join(CERT_FILE), &b.path().join(KEY_FILE))
            .unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");

        let err = TlsIdentity::from_pem_files(&cert, &key).unwrap_err();
        assert!(matches!(err, CertError::Read { .. }), "{err}");
        assert!(err.to_string().contains("cert.pem"), "{err}");

        fs::write(&cert, "not a certificate\n").unwrap();
        let err = TlsIdentity::from_pem_files(&cert, &key).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("cert.pem"), "{err}");

        fs::write(&cert, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        let err = TlsIdentity::from_pem_files(&cert, &key).unwrap_err();
        assert!(matches!(err, CertError::Pem { .. }), "{err}");

        TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        let real_cert = dir.path().join(CERT_FILE);
        fs::write(&key, "").unwrap();
        let err = TlsIdentity::from_pem_files(&real_cert, &key).unwrap_err();
        assert!(matches!(err, CertError::NoKey { .. }), "{err}");
        assert!(err.to_string().contains("key.pem"), "{err}");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = TlsIdentity::load_or_generate(dir.path(), &how()).unwrap();
        let shown = format!("{cert:?}");
        assert!(shown.contains(&cert.fingerprint()), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }
}
