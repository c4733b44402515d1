//! TLS (RFC 8446, and 1.2 for older clients) through rustls with its `ring` provider.
//!
//! - [`client`]: the client's configuration: how the server's certificate is checked
//!   (system roots, given roots, or insecurely not), ALPN, and the handshake.
//! - [`server`]: the server's configuration: a certificate chain and key, and ALPN offering
//!   `h2` and `http/1.1` (RFC 7301; RFC 9113 §3.2).
//! - [`cert`]: a self-signed certificate made at start, PEM files loaded, and the SHA-256
//!   fingerprint a user compares with what a client shows.

pub mod cert;
pub mod client;
pub mod server;

pub use cert::{fingerprint_sha256, load_pem, SelfSigned};
pub use server::{TlsServerConfig, ALPN_H2, ALPN_HTTP11};

/// The crypto provider every TLS configuration of this crate uses: rustls's `ring`
/// provider, named rather than taken from a process-wide default, so that no other crate's
/// choice changes it.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
