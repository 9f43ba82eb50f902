//! rustls configurations: the listener's certificate and the roots upstreams are
//! verified against (system roots plus an optional extra CA file).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
pub use rustls::{ClientConfig, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| TlsConfigError::Read { path: p.clone(), source })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate { path: p });
    }
    Ok(certs)
}

/// A server config for `--tls-cert/--tls-key`. ALPN is http/1.1: the RFC 6455
/// handshake only exists there.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs = read_certs(cert)?;
    let kp = key.display().to_string();
    let data = std::fs::read(key).map_err(|source| TlsConfigError::Read { path: kp.clone(), source })?;
    let key = PrivateKeyDer::from_pem_slice(&data).map_err(|_| TlsConfigError::NoKey { path: kp })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client config trusting the system roots plus `extra_ca` (e.g. a private CA or a
/// self-signed test upstream).
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        for cert in read_certs(path)? {
            roots.add(cert)?;
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
