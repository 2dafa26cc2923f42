//! HTTPS and wss://: the server's certificate, from files or made on first start.
//!
//! A self-signed certificate covers the machine's names and addresses and is kept in the
//! data directory, so its fingerprint stays the same across restarts and a tablet that
//! was told to trust it keeps trusting it. It is made again only when the names it must
//! cover change.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::site::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "[server.tls] cannot read {what} {path}: {reason}; check the path ([server.tls] cert/key, relative to the site file) and that it is PEM"
    )]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("[server.tls] the certificate and key do not work together: {0}")]
    Config(#[from] rustls::Error),
    #[error("[server.tls] cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error(
        "[server.tls] cannot keep the self-signed certificate in {path}: {source}; check that the data directory is writable"
    )]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What HTTPS serves with.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, `AA:BB:...`, for checking it on a tablet.
    pub fingerprint: String,
    /// Where a self-signed certificate is kept (to install on tablets), if it is one.
    pub self_signed: Option<PathBuf>,
}

/// Loads (or, with `self_signed`, makes or reuses) the certificate for `listen`.
pub fn load(settings: &TlsSettings, data_dir: &Path, listen: SocketAddr) -> Result<Tls, TlsError> {
    let (chain, key, self_signed) = if settings.self_signed {
        let dir = data_dir.join("tls");
        let names = names_to_cover(listen, &settings.names);
        let (chain, key) = self_signed(&dir, &names)?;
        (chain, key, Some(dir.join(CERT_FILE)))
    } else {
        let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
            return Err(TlsError::Generate(
                "give cert and key, or self_signed = true".into(),
            ));
        };
        (read_chain(cert)?, read_key(key)?, None)
    };
    let fingerprint = fingerprint(&chain[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        fingerprint,
        self_signed,
    })
}

const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";
/// The names a kept certificate was made for, one a line: a change makes a new one.
const NAMES_FILE: &str = "names";

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Read {
        what: "certificate",
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("no CERTIFICATE block in it".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Read {
        what: "private key",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// `localhost`, the machine's name, its addresses (or the one it listens on) and extras.
fn names_to_cover(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_ascii_lowercase();
        if !host.is_empty() {
            names.push(format!("{host}.local"));
            names.push(host);
        }
    }
    let mut addresses: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1])];
    if listen.ip().is_unspecified() {
        addresses.extend(
            if_addrs::get_if_addrs()
                .unwrap_or_default()
                .into_iter()
                .map(|i| i.ip()),
        );
    } else {
        addresses.push(listen.ip());
    }
    names.extend(addresses.iter().map(IpAddr::to_string));
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn self_signed(
    dir: &Path,
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let (cert_path, key_path, names_path) = (
        dir.join(CERT_FILE),
        dir.join(KEY_FILE),
        dir.join(NAMES_FILE),
    );
    let wanted = names.join("\n");
    if std::fs::read_to_string(&names_path).is_ok_and(|kept| kept == wanted)
        && let (Ok(chain), Ok(key)) = (read_chain(&cert_path), read_key(&key_path))
    {
        return Ok((chain, key));
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let save = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| TlsError::Save {
            path: path.to_path_buf(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Save {
        path: dir.to_path_buf(),
        source,
    })?;
    save(&key_path, &made.signing_key.serialize_pem())?;
    restrict(&key_path);
    save(&cert_path, &made.cert.pem())?;
    save(&names_path, &wanted)?;
    tracing::info!(path = %cert_path.display(), names = %names.join(", "), "made a self-signed certificate");
    Ok((vec![made.cert.der().clone()], read_key(&key_path)?))
}

/// Only the gateway's user may read the private key.
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// SHA-256 of a certificate as `AA:BB:...`, the form browsers and `openssl x509
/// -fingerprint -sha256` show.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TlsSettings {
        TlsSettings {
            self_signed: true,
            names: vec!["avgate-room101.example.edu".into()],
            ..TlsSettings::default()
        }
    }

    #[test]
    fn a_self_signed_certificate_is_kept_and_reused_until_its_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let first = load(&settings(), dir.path(), listen).unwrap();
        let again = load(&settings(), dir.path(), listen).unwrap();
        assert_eq!(
            first.fingerprint, again.fingerprint,
            "same certificate after a restart"
        );
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let kept = std::fs::read_to_string(dir.path().join("tls").join(NAMES_FILE)).unwrap();
        assert!(kept.contains("avgate-room101.example.edu") && kept.contains("127.0.0.1"));
        let mut renamed = settings();
        renamed.names.push("another.example.edu".into());
        let changed = load(&renamed, dir.path(), listen).unwrap();
        assert_ne!(changed.fingerprint, first.fingerprint);
    }

    #[test]
    fn unreadable_files_say_which_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("cert.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let settings = TlsSettings {
            cert: Some(garbage.clone()),
            key: Some(dir.path().join("missing.pem")),
            ..TlsSettings::default()
        };
        let err = load(&settings, dir.path(), "127.0.0.1:0".parse().unwrap())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("certificate") && err.contains("cert.pem"),
            "{err}"
        );
    }
}
