//! HTTP over synack's stack or the kernel's: HTTP/1.1 persistent connections, HTTP/2
//! multiplexing, both in cleartext or over TLS ([`tls`]), and HTTP/3 over QUIC ([`h3`]); a
//! keep-alive [`server`] and a pooled [`Client`], with [`Metrics`] of what each connection
//! cost.
//!
//! The pool ([`pool`]) knows nothing of HTTP; the client ([`client`]) runs hyper's HTTP/1.1
//! client connections in it, and keeps one HTTP/2 connection per origin beside it; a
//! [`Connector`] opens them over synack ([`SynackConnector`], with TCP Fast Open if asked) or
//! the kernel ([`KernelConnector`]). The server ([`server`]) runs hyper's HTTP/1.1 and HTTP/2
//! server connections with nginx's keep-alive settings around them, on any
//! [`server::Listener`]. [`routes`] is the service `synack serve` runs.

pub mod client;
pub mod connector;
mod guard;
pub mod h3;
pub mod headers;
mod io;
pub mod metrics;
pub mod pool;
pub mod routes;
pub mod server;
pub mod tls;

pub use client::{Client, ClientConfig, Error, RequestInfo, ResponseBody};
pub use client::{Http2ClientConfig, Protocol, RetryReason};
pub use connector::Scheme;
pub use connector::{Connected, Connector, KernelConnector, Origin, SynackConnector};
pub use metrics::{Metrics, ServerStats};
pub use pool::PoolConfig;
pub use server::{serve, Http2Config, ServerConfig, ServerHandle};
pub use tls::client::{CertVerification, TlsClientConfig, TlsInfo};
pub use tls::TlsServerConfig;

/// A current-thread tokio runtime whose clock is paused: virtual time, which jumps to the
/// next timer whenever every task waits (for runs on a simulated network outside tests).
pub fn virtual_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
}
