//! The data plane's TLS identity: one certificate and its key, which clients
//! pin by the SHA-256 of the certificate rather than by a CA chain.
//!
//! The fingerprint reaches clients through the control plane
//! (`OpenVoiceResponse.cert_sha256`), so it must not change across restarts:
//! a generated certificate is written to the data directory and loaded from
//! there next time ([`TlsIdentity`] does the work).

use std::ops::Deref;
use std::path::Path;

pub use openspeak_shared::identity::CertError;
use openspeak_shared::identity::{SelfSigned, TlsIdentity};

/// The certificate's file name in the data directory.
pub const CERT_FILE: &str = "dataplane_cert.pem";
/// The private key's file name in the data directory.
pub const KEY_FILE: &str = "dataplane_key.pem";

/// The certificate and key the QUIC listener presents.
#[derive(Debug, Clone)]
pub struct DataplaneCert(TlsIdentity);

impl DataplaneCert {
    /// Loads [`CERT_FILE`] and [`KEY_FILE`] from `dir`, or generates them
    /// on first start ([`TlsIdentity::load_or_generate`]). Give each data
    /// plane its own directory.
    pub fn load_or_generate(dir: &Path) -> Result<Self, CertError> {
        // Clients pin the hash and check no name, so the names only help a
        // human reading the certificate.
        let how = SelfSigned {
            cert_file: CERT_FILE,
            key_file: KEY_FILE,
            common_name: "data plane",
            names: ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec(),
        };
        TlsIdentity::load_or_generate(dir, &how).map(Self)
    }

    /// Loads an operator-supplied certificate chain and key
    /// ([`TlsIdentity::from_pem_files`]).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, CertError> {
        TlsIdentity::from_pem_files(cert, key).map(Self)
    }
}

impl Deref for DataplaneCert {
    type Target = TlsIdentity;

    fn deref(&self) -> &TlsIdentity {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_plane_keeps_its_own_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let cert = DataplaneCert::load_or_generate(dir.path()).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [CERT_FILE, KEY_FILE]);
        let again =
            DataplaneCert::from_pem_files(&dir.path().join(CERT_FILE), &dir.path().join(KEY_FILE))
                .unwrap();
        assert_eq!(cert.fingerprint(), again.fingerprint());
    }
}
