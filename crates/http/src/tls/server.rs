//! The server's TLS configuration: a certificate chain, its key, and ALPN.
//!
//! ALPN (RFC 7301) offers `h2` first and `http/1.1` second, so a client that speaks both gets
//! HTTP/2 (RFC 9113 §3.2) and one that offers only `http/1.1`, or no ALPN at all, gets
//! HTTP/1.1 with the server's keep-alive policy and request guard. TLS 1.3 and 1.2 are
//! accepted (rustls's safe defaults; RFC 9113 §9.2 asks HTTP/2 for TLS 1.2 at least).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::cert::{fingerprint_sha256, load_pem, SelfSigned};

/// The ALPN protocol id of HTTP/2 over TLS (RFC 9113 §3.2).
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol id of HTTP/1.1 (RFC 7301 §6).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// What the server needs to accept TLS connections, shared by all of them.
#[derive(Clone)]
pub struct TlsServerConfig {
    rustls: Arc<rustls::ServerConfig>,
    fingerprint: Option<String>,
}

impl TlsServerConfig {
    /// A configuration serving `chain` (leaf first) with `key`, offering `h2` and
    /// `http/1.1` by ALPN.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> io::Result<TlsServerConfig> {
        Self::with_alpn(chain, key, &[ALPN_H2, ALPN_HTTP11])
    }

    /// The same, offering the ALPN protocols `alpn` in order of preference (`[ALPN_HTTP11]`
    /// for a server that speaks no HTTP/2 over TLS).
    pub fn with_alpn(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        alpn: &[&[u8]],
    ) -> io::Result<TlsServerConfig> {
        let fingerprint = chain.first().map(|c| fingerprint_sha256(c));
        let mut cfg = rustls::ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(invalid)?;
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsServerConfig {
            rustls: Arc::new(cfg),
            fingerprint,
        })
    }

    /// A configuration with a certificate chain and key read from PEM files.
    pub fn from_pem_files(cert: &Path, key: &Path) -> io::Result<TlsServerConfig> {
        let (chain, key) = load_pem(cert, key)?;
        Self::new(chain, key)
    }

    /// A configuration with a new self-signed certificate for `addr` (see
    /// [`SelfSigned::for_addr`]), and that certificate.
    pub fn self_signed(addr: IpAddr) -> io::Result<(TlsServerConfig, SelfSigned)> {
        let c = SelfSigned::for_addr(addr)?;
        Ok((Self::with_self_signed(&c)?, c))
    }

    /// A configuration that presents `c`.
    pub fn with_self_signed(c: &SelfSigned) -> io::Result<TlsServerConfig> {
        Self::new(
            vec![c.cert.clone()],
            PrivateKeyDer::Pkcs8(c.key.clone_key()),
        )
    }

    /// A configuration made elsewhere (its ALPN list is used as it is).
    pub fn from_rustls(cfg: Arc<rustls::ServerConfig>) -> TlsServerConfig {
        TlsServerConfig {
            rustls: cfg,
            fingerprint: None,
        }
    }

    /// The rustls configuration.
    pub fn rustls(&self) -> &Arc<rustls::ServerConfig> {
        &self.rustls
    }

    /// The SHA-256 fingerprint of the leaf certificate, when this value was made from one.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }
}

fn invalid(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alpn: Vec<String> = self
            .rustls
            .alpn_protocols
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        f.debug_struct("TlsServerConfig")
            .field("alpn", &alpn)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// Two configurations are equal when they are the same shared rustls configuration.
impl PartialEq for TlsServerConfig {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.rustls, &other.rustls)
    }
}

impl Eq for TlsServerConfig {}
