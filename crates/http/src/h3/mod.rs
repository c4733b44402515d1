//! HTTP/3 (RFC 9114) over QUIC (RFC 9000, RFC 9001): QUIC from `quinn`, HTTP/3 from `h3` and
//! `h3-quinn`, TLS 1.3 from rustls with the `ring` provider (the same certificates as HTTPS,
//! [`crate::tls`]), on synack's UDP ([`socket::SynackUdp`]) or the kernel's.
//!
//! - [`server_config`] / [`client_config`]: QUIC's TLS (ALPN `h3`, RFC 9114 §3.1; TLS 1.3
//!   only, RFC 9001 §4.2), idle timeout and stream limit, and 0-RTT (RFC 9001 §4.6) when asked;
//! - [`synack_endpoint`] / [`kernel_endpoint`]: a quinn endpoint on either stack;
//! - [`server`]: the routes of `synack serve` answered over HTTP/3, with `425 Too Early`
//!   (RFC 8470 §5.2) for a non-idempotent request that arrived in 0-RTT;
//! - [`client`]: one QUIC connection per origin carrying every call as a stream, resuming
//!   with 0-RTT from the session tickets of the last one;
//! - [`altsvc`]: `Alt-Svc` (RFC 7838) read from HTTP/1.1 and HTTP/2 responses, so that the
//!   later calls to an origin go over HTTP/3, with a fallback to TCP when QUIC fails.
//!
//! Time is quinn's `TokioRuntime`'s, which reads tokio's clock: on a simulated network under
//! paused time QUIC's timers (loss detection, ACK delay, idle timeout) run on virtual time.

pub mod altsvc;
pub mod client;
pub mod server;
pub mod socket;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use synack_stack::net::UdpSocket;

pub use altsvc::{AltSvcCache, AltSvcClient, AltSvcError, AltSvcStats, Via};
pub use client::{EventLog, H3Client, H3Response};
/// The QUIC implementation, for its configuration and connection types.
pub use quinn;
pub use server::{serve_h3, AltSvc, H3ServerStats};
pub use socket::{SocketCounters, SocketStats, SynackUdp};

use crate::tls::client::TlsClientConfig;
use crate::tls::provider;

/// Datagrams quinn may hand to an unseeded synack endpoint at once (a GSO batch).
pub const GSO_SEGMENTS: usize = 10;

/// The ALPN protocol id of HTTP/3 (RFC 9114 §3.1).
pub const ALPN_H3: &[u8] = b"h3";

/// The server's QUIC settings (`synack serve --http3`), mapped from the HTTP/2 flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H3Config {
    /// Close a connection idle this long (QUIC's `max_idle_timeout`, RFC 9000 §10.1).
    pub idle_timeout: Duration,
    /// Bidirectional streams (requests) a peer may have open at once (RFC 9000 §4.6).
    pub max_concurrent_streams: u32,
    /// Accept 0-RTT data from resumed sessions (RFC 9001 §4.6.1).
    pub early_data: bool,
}

impl Default for H3Config {
    fn default() -> H3Config {
        H3Config {
            idle_timeout: Duration::from_secs(30),
            max_concurrent_streams: 128,
            early_data: false,
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

fn transport(idle: Duration, streams: u32) -> io::Result<Arc<quinn::TransportConfig>> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle.try_into().map_err(invalid)?));
    t.max_concurrent_bidi_streams(streams.into());
    Ok(Arc::new(t))
}

/// A quinn server configuration presenting `chain` (leaf first) with `key`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    config: &H3Config,
) -> io::Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(invalid)?;
    tls.alpn_protocols = vec![ALPN_H3.to_vec()];
    // quinn accepts 0-RTT only with an unlimited early-data size (RFC 9001 §4.6.1).
    tls.max_early_data_size = if config.early_data { u32::MAX } else { 0 };
    let crypto = QuicServerConfig::try_from(tls).map_err(invalid)?;
    let mut s = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    s.transport_config(transport(
        config.idle_timeout,
        config.max_concurrent_streams,
    )?);
    Ok(s)
}

/// A quinn client configuration checking certificates as `tls` says, offering `h3`. Its
/// session store is shared by every connection made with it (clones included), so a second
/// connection to a server resumes, and with `early_data` sends its first requests in 0-RTT.
pub fn client_config(tls: &TlsClientConfig, early_data: bool) -> io::Result<quinn::ClientConfig> {
    let base = crate::tls::client::rustls_config(tls, &[ALPN_H3])?;
    let mut c = rustls::ClientConfig::clone(&base);
    // QUIC is TLS 1.3 only (RFC 9001 §4.2); rustls's QUIC support checks it.
    c.enable_early_data = early_data;
    let crypto = QuicClientConfig::try_from(c).map_err(invalid)?;
    let mut q = quinn::ClientConfig::new(Arc::new(crypto));
    q.transport_config(transport(Duration::from_secs(30), 128)?);
    Ok(q)
}

/// A quinn endpoint on a synack UDP socket (client, or server too with `server`).
pub fn synack_endpoint(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> io::Result<(quinn::Endpoint, Arc<SocketCounters>)> {
    synack_endpoint_seeded(socket, server, None)
}

/// As [`synack_endpoint`], quinn's random choices (connection IDs, the packet numbers it
/// skips to catch optimistic ACKs) drawn from `seed`: on the simulator, with certificates
/// whose signatures are all of one size, the same seed then sends the same datagrams.
pub fn synack_endpoint_seeded(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
    seed: Option<u64>,
) -> io::Result<(quinn::Endpoint, Arc<SocketCounters>)> {
    // On the simulator one datagram per send, so that a seed's packets stay the same; over
    // TUN, quinn's GSO batches (see [`SynackUdp::with_segments`]).
    let segments = if seed.is_some() { 1 } else { GSO_SEGMENTS };
    let (sock, counters) = SynackUdp::with_segments(socket, segments);
    let mut config = quinn::EndpointConfig::default();
    if let Some(seed) = seed {
        let mut s = [0u8; 32];
        for (i, chunk) in s.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(
                &(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes(),
            );
        }
        config.rng_seed(Some(s));
    }
    let ep = quinn::Endpoint::new_with_abstract_socket(
        config,
        server,
        sock,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((ep, counters))
}

/// A quinn endpoint on a kernel UDP socket bound to `addr`.
pub fn kernel_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    match server {
        Some(s) => quinn::Endpoint::server(s, addr),
        None => quinn::Endpoint::client(addr),
    }
}
