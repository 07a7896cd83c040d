//! The cluster's own certificate authority, for mutual TLS on the internal
//! link: `openspeak-control cluster init` makes the authority, the control
//! plane's certificate and one certificate per data plane; `cluster issue`
//! makes another data plane's later from the authority's key.
//!
//! The authority is private to one deployment, so nothing outside it is
//! trusted on the link and a data plane's certificate proves it belongs.
//! An issued certificate is valid for ten years and carries the names a
//! peer dials it by.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use openspeak_shared::persist;

/// The authority's certificate: what both planes set as `cluster.tls_ca`.
pub const CA_CERT: &str = "cluster-ca.pem";
/// Its key: only `cluster issue` needs it; keep it off the servers.
pub const CA_KEY: &str = "cluster-ca-key.pem";
/// The control plane's certificate and key (`cluster.tls_cert`/`tls_key`
/// on the control plane).
pub const CONTROL_CERT: &str = "control.pem";
pub const CONTROL_KEY: &str = "control-key.pem";

/// The authority's name: the same in `init` and `issue`, so that a
/// certificate issued later names the issuer the first ones did.
const CA_NAME: &str = "OpenSpeak cluster CA";

/// How long an issued certificate is valid, in years.
const VALIDITY_YEARS: i32 = 10;

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClusterCaError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{} already exists; init never overwrites an authority (use `cluster issue`)", .0.display())]
    Exists(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{0}` is not a usable data plane name (letters, digits, `-`, `_`, `.`)")]
    BadName(String),
}

/// The files `init` or `issue` wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

/// Makes the authority in `dir`, the control plane's certificate (valid
/// for `hosts` and the loopback names) and one certificate per name in
/// `dataplanes`.
pub fn init(
    dir: &Path,
    hosts: &[String],
    dataplanes: &[String],
) -> Result<Written, ClusterCaError> {
    let ca_cert = dir.join(CA_CERT);
    if ca_cert.exists() {
        return Err(ClusterCaError::Exists(ca_cert));
    }
    for name in dataplanes {
        check_name(name)?;
    }
    let ca_key = KeyPair::generate()?;
    let ca = ca_params()?.self_signed(&ca_key)?;
    let mut written = Written::default();
    write(dir, CA_KEY, &ca_key.serialize_pem(), 0o600, &mut written)?;
    write(dir, CA_CERT, &ca.pem(), 0o644, &mut written)?;
    let issuer = Issuer::new(ca_params()?, ca_key);

    let (cert, key) = leaf(
        &issuer,
        "control plane",
        loopback_and(hosts.iter().cloned()),
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    write(dir, CONTROL_KEY, &key, 0o600, &mut written)?;
    write(dir, CONTROL_CERT, &cert, 0o644, &mut written)?;
    for name in dataplanes {
        issue_with(&issuer, dir, name, &mut written)?;
    }
    Ok(written)
}

/// Makes data plane `name`'s certificate with the authority in `dir`.
pub fn issue(dir: &Path, name: &str) -> Result<Written, ClusterCaError> {
    check_name(name)?;
    let key_path = dir.join(CA_KEY);
    let pem = std::fs::read_to_string(&key_path).map_err(|source| ClusterCaError::Read {
        path: key_path,
        source,
    })?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&pem)?);
    let mut written = Written::default();
    issue_with(&issuer, dir, name, &mut written)?;
    Ok(written)
}

/// The names a control plane's certificate is valid for: the loopback
/// ones, so that a client on the same machine can dial any of them, then
/// `others`, each name once.
pub(crate) fn loopback_and(others: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).into();
    for name in others {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// `dataplane-<name>.pem` and `dataplane-<name>-key.pem`.
pub fn dataplane_files(name: &str) -> (String, String) {
    (
        format!("dataplane-{name}.pem"),
        format!("dataplane-{name}-key.pem"),
    )
}

fn issue_with(
    issuer: &Issuer<'_, KeyPair>,
    dir: &Path,
    name: &str,
    written: &mut Written,
) -> Result<(), ClusterCaError> {
    let (cert, key) = leaf(
        issuer,
        &format!("data plane {name}"),
        vec![name.to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    let (cert_file, key_file) = dataplane_files(name);
    write(dir, &key_file, &key, 0o600, written)?;
    write(dir, &cert_file, &cert, 0o644, written)
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid_for_years(&mut params);
    Ok(params)
}

/// A certificate signed by `issuer` for `names`, and its new key, as PEM.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    names: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("OpenSpeak {common_name}"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    valid_for_years(&mut params);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// From the first of January of this year for ten years: a bounded life
/// (rcgen's default runs to 4096), and no clock a little behind sees a
/// certificate from the future.
fn valid_for_years(params: &mut CertificateParams) {
    let secs = crate::authenticator::unix_now();
    // Mean Gregorian year; off by a day at most around New Year, which
    // only moves the start by a year.
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

fn check_name(name: &str) -> Result<(), ClusterCaError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(ClusterCaError::BadName(name.to_owned()))
    }
}

fn write(
    dir: &Path,
    name: &str,
    contents: &str,
    mode: u32,
    written: &mut Written,
) -> Result<(), ClusterCaError> {
    let path = dir.join(name);
    persist::write_atomic(&path, contents.as_bytes(), mode).map_err(|source| {
        ClusterCaError::Write {
            path: path.clone(),
            source,
        }
    })?;
    written.files.push(path);
    Ok(())
}

/// `openspeak-control cluster ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// Make the cluster's authority, the control plane's certificate and
    /// one certificate per data plane, for mutual TLS on the internal link
    Init {
        /// Directory to write them to (created; an authority there is
        /// never overwritten)
        #[arg(long, value_name = "DIR", default_value = "cluster-tls")]
        out: PathBuf,
        /// A name or address data planes dial the control plane by, besides
        /// localhost and the loopback addresses (repeatable)
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// A data plane to make a certificate for (repeatable)
        #[arg(long = "dataplane", value_name = "NAME", default_value = "dataplane-1")]
        dataplanes: Vec<String>,
    },
    /// Make one more data plane's certificate with the authority `init`
    /// made (its key must be in the directory)
    Issue {
        /// The directory `init` wrote
        #[arg(long, value_name = "DIR", default_value = "cluster-tls")]
        dir: PathBuf,
        /// The data plane's name
        #[arg(long = "dataplane", value_name = "NAME")]
        name: String,
    },
}

impl ClusterCommand {
    /// Runs the command; what to tell the operator.
    pub fn run(&self) -> Result<String, ClusterCaError> {
        let (dir, written, names) = match self {
            ClusterCommand::Init {
                out,
                hosts,
                dataplanes,
            } => (out, init(out, hosts, dataplanes)?, dataplanes.clone()),
            ClusterCommand::Issue { dir, name } => (dir, issue(dir, name)?, vec![name.clone()]),
        };
        let mut said = String::new();
        for file in &written.files {
            said.push_str(&format!("wrote {}\n", file.display()));
        }
        let at = |file: &str| dir.join(file).display().to_string();
        if matches!(self, ClusterCommand::Init { .. }) {
            said.push_str(&format!(
                "\ncontrol plane:\n  cluster.tls_cert: {}\n  cluster.tls_key: {}\n  cluster.tls_ca: {}\n",
                at(CONTROL_CERT),
                at(CONTROL_KEY),
                at(CA_CERT)
            ));
        }
        for name in names {
            let (cert, key) = dataplane_files(&name);
            said.push_str(&format!(
                "\ndata plane {name} (copy these files to it):\n  cluster.control_addr: \
                 https://<a --host name>:50061\n  cluster.tls_cert: {}\n  cluster.tls_key: {}\n  \
                 cluster.tls_ca: {}\n",
                at(&cert),
                at(&key),
                at(CA_CERT)
            ));
        }
        said.push_str(&format!(
            "\nKeep {} off the servers: only `cluster issue` needs it.\n",
            at(CA_KEY)
        ));
        Ok(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_given_twice_or_a_loopback_one_is_listed_once() {
        let names =
            loopback_and(["127.0.0.1", "voice.example.org", "voice.example.org"].map(String::from));
        assert_eq!(
            names,
            ["localhost", "127.0.0.1", "::1", "voice.example.org"]
        );
    }

    #[test]
    fn init_makes_every_file_once_and_issue_adds_a_data_plane() {
        let dir = tempfile::tempdir().unwrap();
        let made = init(
            dir.path(),
            &["voice.example.org".into()],
            &["a".into(), "b".into()],
        )
        .unwrap();
        assert_eq!(made.files.len(), 2 + 2 + 2 * 2);
        #[cfg(unix)]
        for key in [CA_KEY, CONTROL_KEY, "dataplane-a-key.pem"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let ca_before = std::fs::read(dir.path().join(CA_CERT)).unwrap();
        let again = init(dir.path(), &[], &["c".into()]).unwrap_err();
        assert!(matches!(again, ClusterCaError::Exists(_)), "{again}");
        assert_eq!(std::fs::read(dir.path().join(CA_CERT)).unwrap(), ca_before);

        let issued = issue(dir.path(), "c").unwrap();
        assert_eq!(issued.files.len(), 2);
        assert!(dir.path().join("dataplane-c.pem").exists());
        for bad in ["", "a/b", "../x", "sp ace"] {
            assert!(
                matches!(issue(dir.path(), bad), Err(ClusterCaError::BadName(_))),
                "{bad:?}"
            );
        }
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(matches!(
            issue(elsewhere.path(), "d"),
            Err(ClusterCaError::Read { .. })
        ));
    }
}
