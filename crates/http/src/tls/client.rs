//! The client's TLS: how the server's certificate is checked ([`CertVerification`]), the
//! ALPN protocols offered (RFC 7301: `h2` and `http/1.1`, RFC 9113 §3.2), and the handshake
//! over any byte stream, with what it negotiated ([`TlsInfo`]).
//!
//! The server is named by the URL's host: SNI (RFC 6066 §3) and the certificate check use
//! it; an IP address is checked against the certificate's IP addresses and sent without SNI
//! (RFC 6066 §3 allows only DNS names there).

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

use super::provider;

/// How the client checks the server's certificate.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum CertVerification {
    /// Against the system's trusted roots (`/etc/ssl/certs`, or `SSL_CERT_FILE` /
    /// `SSL_CERT_DIR`), loaded once on the first `https://` connection.
    #[default]
    SystemRoots,
    /// Against these roots only (e.g. `--cacert FILE`), DER-encoded.
    Roots(Vec<CertificateDer<'static>>),
    /// **Insecure**: any certificate is accepted, whoever it names and whoever signed it
    /// (`-k/--insecure`). The handshake's signatures are still checked, so the peer holds
    /// the key of the certificate it sent, but nothing says that certificate is the
    /// server's: anyone on the path can stand in for it.
    InsecureAcceptAnyCertificate,
}

impl fmt::Debug for CertVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertVerification::SystemRoots => f.write_str("SystemRoots"),
            CertVerification::Roots(r) => write!(f, "Roots({} certificates)", r.len()),
            CertVerification::InsecureAcceptAnyCertificate => {
                f.write_str("InsecureAcceptAnyCertificate")
            }
        }
    }
}

impl CertVerification {
    /// The certificates of a PEM file (`--cacert FILE`) as the only trusted roots. A file
    /// without a certificate, or with one that is not a usable trust anchor, is an error
    /// naming the file.
    pub fn ca_file(path: impl AsRef<Path>) -> io::Result<CertVerification> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        CertVerification::ca_pem(&pem)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// The certificates of PEM text as the only trusted roots.
    pub fn ca_pem(pem: &[u8]) -> io::Result<CertVerification> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("not PEM certificates ({e})")))?;
        if certs.is_empty() {
            return Err(invalid("no certificate (BEGIN CERTIFICATE) in it".into()));
        }
        let mut store = RootCertStore::empty();
        for c in &certs {
            store
                .add(c.clone())
                .map_err(|e| invalid(format!("a certificate cannot be a trust anchor: {e}")))?;
        }
        Ok(CertVerification::Roots(certs))
    }
}

/// The client's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsClientConfig {
    /// How the server's certificate is checked.
    pub verification: CertVerification,
}

/// What a TLS handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The protocol the server picked by ALPN (`h2`, `http/1.1`), if it picked one.
    pub alpn: Option<String>,
    /// How long the handshake took (ClientHello to the server's Finished).
    pub handshake: Duration,
}

/// The system's roots, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            // Unparsable system certificates are skipped, as every TLS client does: the
            // server's chain then fails to verify with a clear error, if it needed them.
            let _ = store.add_parsable_certificates(found.certs);
            Arc::new(store)
        })
        .clone()
}

/// A rustls client configuration for `config`, offering `alpn` in order of preference.
pub fn rustls_config(
    config: &TlsClientConfig,
    alpn: &[&[u8]],
) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?;
    let mut c = match &config.verification {
        CertVerification::SystemRoots => builder
            .with_root_certificates(system_roots())
            .with_no_client_auth(),
        CertVerification::Roots(certs) => {
            let mut store = RootCertStore::empty();
            for cert in certs {
                store.add(cert.clone()).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("trusted root: {e}"))
                })?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        CertVerification::InsecureAcceptAnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(c))
}

/// The name the certificate must carry, from the URL's host: an IP address or a DNS name.
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid TLS server name ({e})"),
        )
    })
}

/// Runs the TLS handshake over `io` as a client of `host`. A certificate the settings do not
/// accept fails the handshake with rustls's reason (e.g. `invalid peer certificate:
/// UnknownIssuer`).
pub async fn connect<S>(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    io: S,
) -> io::Result<(TlsStream<S>, TlsInfo)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = server_name(host)?;
    let t0 = tokio::time::Instant::now();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, io)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}")))?;
    let handshake = t0.elapsed();
    let (_, conn) = stream.get_ref();
    let info = TlsInfo {
        version: match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
            Some(v) => format!("{v:?}"),
            None => "unknown".into(),
        },
        cipher: conn
            .negotiated_cipher_suite()
            .map_or_else(|| "unknown".into(), |s| format!("{:?}", s.suite())),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        handshake,
    };
    Ok((stream, info))
}

/// `CertVerification::InsecureAcceptAnyCertificate`: every certificate passes; the
/// handshake signatures are still verified with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
