//! `synack serve`: HTTP/1.1 and HTTP/2, in cleartext or over TLS.
//!
//! `--http2` turns on h2c with prior knowledge: every cleartext connection's first bytes are
//! read, and the HTTP/2 preface (RFC 9113 §3.4) makes it HTTP/2; anything else is HTTP/1.1
//! on the same port, as before. Without it (the default, as nginx without `http2`) the
//! preface is an HTTP/1.1 request with a bad version, answered 505. Over TLS (`--tls`, or
//! `--cert` and `--key`) ALPN offers `h2` and `http/1.1` whatever `--http2` says: the
//! client chooses, and one that offers neither gets HTTP/1.1.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use synack_http::routes::Routes;
use synack_http::tls::TlsServerConfig;
use synack_http::{serve, Http2Config, ServerConfig, ServerHandle};
use synack_stack::net::{nc, TcpListener};
use synack_stack::sim::units::parse_size;

use super::h3::{H3Server, ALT_SVC_MAX_AGE};
use super::{duration, Transport};
use synack_http::h3::AltSvc;

/// Examples shown after the help of `synack serve`.
pub const SERVE_EXAMPLES: &str = "\
Examples:
  synack serve --tun tun0 --ip 198.18.0.2/24 --keepalive-header
      curl -v http://198.18.0.2/ http://198.18.0.2/bytes/1000
  synack serve --kernel --listen 127.0.0.1:8080 --keepalive-timeout 5s --keepalive-requests 100
  synack serve --kernel --listen 127.0.0.1:8080 ./public     serve a directory too
  synack serve --kernel --http2              h2c (prior knowledge) and HTTP/1.1 on one port
      h2load -n 1000 -c 4 -m 10 http://127.0.0.1:8080/
      nghttp -nv http://127.0.0.1:8080/      shows the SETTINGS synack sends
  synack serve --kernel --listen 127.0.0.1:8443 --tls    self-signed; fingerprint printed
      curl --http2 -k https://127.0.0.1:8443/ https://127.0.0.1:8443/bytes/100
  synack serve --kernel --listen 127.0.0.1:8443 --cert cert.pem --key key.pem
  synack serve --kernel --listen 127.0.0.1:8443 --tls --http3 --early-data
      synack get --kernel --http3 -k -v https://127.0.0.1:8443/   HTTP/3 on UDP 8443";

/// Flags of `synack serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Serve the files under this directory too.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(flatten)]
    pub transport: Transport,

    /// Port to listen on over TUN (on --ip's address).
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 80,
        help_heading = "Transport"
    )]
    pub port: u16,

    /// Address to listen on with --kernel.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        requires = "kernel",
        help_heading = "Transport"
    )]
    pub listen: SocketAddr,

    /// Idle time allowed between requests before the server closes the connection (nginx
    /// keepalive_timeout; 0 turns persistent connections off).
    #[arg(long, value_name = "DURATION", default_value = "75s", value_parser = duration, help_heading = "Keep-alive")]
    pub keepalive_timeout: Duration,

    /// Requests allowed on one connection; the last one gets `Connection: close`.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1000,
        help_heading = "Keep-alive"
    )]
    pub keepalive_requests: u64,

    /// Longest life of a connection: the first response after it says `Connection: close`.
    #[arg(long, value_name = "DURATION", default_value = "3600s", value_parser = duration, help_heading = "Keep-alive")]
    pub keepalive_time: Duration,

    /// Send `Connection: keep-alive` and `Keep-Alive: timeout=T, max=N` (N: requests left).
    #[arg(long, help_heading = "Keep-alive")]
    pub keepalive_header: bool,

    /// Time allowed for a request head from its first byte.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration, help_heading = "Keep-alive")]
    pub header_timeout: Duration,

    /// Largest request head accepted (431 beyond).
    #[arg(long, value_name = "SIZE", default_value = "16KiB", value_parser = parse_size, help_heading = "Keep-alive")]
    pub max_header_size: u64,

    /// Largest request body accepted (nginx client_max_body_size; 413 beyond; 0: no limit).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size, help_heading = "Keep-alive")]
    pub client_max_body_size: u64,

    /// How long responses may wait for the client to take any of their bytes before the
    /// connection is closed (nginx send_timeout; 0: forever).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration, help_heading = "Keep-alive")]
    pub send_timeout: Duration,

    /// Serve HTTP/2 with prior knowledge (h2c) next to HTTP/1.1 on the same port: a
    /// connection that starts with the HTTP/2 preface is HTTP/2.
    #[arg(long, help_heading = "HTTP/2")]
    pub http2: bool,

    /// Streams a client may have open at once (nginx http2_max_concurrent_streams).
    #[arg(long, value_name = "N", default_value_t = 128, help_heading = "HTTP/2")]
    pub http2_max_concurrent_streams: u32,

    /// SETTINGS_INITIAL_WINDOW_SIZE: bytes of each request body a client may send ahead.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size, help_heading = "HTTP/2")]
    pub http2_initial_window: u64,

    /// The connection's flow-control window for request bodies, all streams together.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size, help_heading = "HTTP/2")]
    pub http2_connection_window: u64,

    /// SETTINGS_MAX_FRAME_SIZE: the largest frame the server takes (16KiB to 16MiB-1).
    #[arg(long, value_name = "SIZE", default_value = "16KiB", value_parser = parse_size, help_heading = "HTTP/2")]
    pub http2_max_frame_size: u64,

    /// SETTINGS_MAX_HEADER_LIST_SIZE: larger request headers get 431; over 4 times this,
    /// the connection ends with ENHANCE_YOUR_CALM.
    #[arg(long, value_name = "SIZE", default_value = "16KiB", value_parser = parse_size, help_heading = "HTTP/2")]
    pub http2_max_header_list: u64,

    /// Send a PING after this long without a frame from the client [default: never].
    #[arg(long, value_name = "DURATION", value_parser = duration, help_heading = "HTTP/2")]
    pub http2_ping_interval: Option<Duration>,

    /// Close the connection when a PING is not answered within this long.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration, help_heading = "HTTP/2")]
    pub http2_ping_timeout: Duration,

    /// Serve TLS with a self-signed certificate made at start for the listen address (its
    /// SHA-256 fingerprint is printed); ALPN offers h2 and http/1.1.
    #[arg(long, conflicts_with_all = ["cert", "key"], help_heading = "TLS")]
    pub tls: bool,

    /// Serve TLS with the certificate chain in this PEM file (with --key).
    #[arg(long, value_name = "FILE", requires = "key", help_heading = "TLS")]
    pub cert: Option<PathBuf>,

    /// The private key of --cert, in PEM (PKCS #8, PKCS #1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "cert", help_heading = "TLS")]
    pub key: Option<PathBuf>,

    /// Serve HTTP/3 over QUIC on UDP at the same port number (TLS from --cert/--key, else a
    /// self-signed certificate, the same as --tls's), and advertise it on HTTP/1.1 and
    /// HTTP/2 responses with `Alt-Svc: h3=":PORT"`. Idle timeout and concurrent streams
    /// follow --keepalive-timeout and --http2-max-concurrent-streams.
    #[arg(long, help_heading = "HTTP/3")]
    pub http3: bool,

    /// With --http3: accept 0-RTT from resumed sessions (GET and HEAD in 0-RTT are answered;
    /// any other method gets 425 Too Early, RFC 8470).
    #[arg(long, requires = "http3", help_heading = "HTTP/3")]
    pub early_data: bool,

    /// Over TUN: capture every packet the stack sends and receives to a pcap file (written
    /// as it goes, complete after Ctrl-C or SIGTERM).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "kernel",
        help_heading = "Transport"
    )]
    pub pcap: Option<PathBuf>,

    /// On exit (Ctrl-C), print the server's counters as one JSON object on stdout.
    #[arg(long)]
    pub stats: bool,

    /// Print each connection's TCP state changes (over TUN) and the counters on exit.
    #[arg(short, long)]
    pub verbose: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// A size flag that must fit in 32 bits.
fn size32(v: u64, flag: &str) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| invalid(format!("{flag} is too large")))
}

impl ServeArgs {
    fn http2_config(&self) -> io::Result<Http2Config> {
        let h = Http2Config {
            max_concurrent_streams: self.http2_max_concurrent_streams,
            initial_stream_window: size32(self.http2_initial_window, "--http2-initial-window")?,
            initial_connection_window: size32(
                self.http2_connection_window,
                "--http2-connection-window",
            )?,
            max_frame_size: size32(self.http2_max_frame_size, "--http2-max-frame-size")?,
            max_header_list_size: size32(self.http2_max_header_list, "--http2-max-header-list")?,
            ping_interval: self.http2_ping_interval.filter(|d| !d.is_zero()),
            ping_timeout: self.http2_ping_timeout,
            ..Http2Config::default()
        };
        h.validate().map_err(invalid)?;
        Ok(h)
    }

    /// The TLS configuration, made (or read) for a server on `ip`, and the lines that say
    /// what it serves (its certificate's names and fingerprint).
    fn tls_config(
        &self,
        ip: std::net::IpAddr,
    ) -> io::Result<(Option<TlsServerConfig>, Vec<String>)> {
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let t = TlsServerConfig::from_pem_files(cert, key)?;
            let line = format!(
                "synack serve: TLS with {}, SHA-256 fingerprint {}",
                cert.display(),
                t.fingerprint().unwrap_or("?")
            );
            return Ok((Some(t), vec![line]));
        }
        if !self.tls {
            return Ok((None, Vec::new()));
        }
        let (t, c) = TlsServerConfig::self_signed(ip)?;
        let lines = vec![
            format!(
                "synack serve: TLS with a self-signed certificate for {}",
                c.names.join(", ")
            ),
            format!("synack serve: SHA-256 fingerprint {}", c.fingerprint()),
        ];
        Ok((Some(t), lines))
    }

    fn config(&self) -> io::Result<ServerConfig> {
        Ok(ServerConfig {
            send_timeout: self.send_timeout,
            h2c: self.http2,
            http2: self.http2_config()?,
            keepalive_timeout: self.keepalive_timeout,
            keepalive_requests: self.keepalive_requests,
            keepalive_time: self.keepalive_time,
            header_read_timeout: self.header_timeout,
            max_header_size: usize::try_from(self.max_header_size).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "--max-header-size is too large",
                )
            })?,
            client_max_body_size: self.client_max_body_size,
            keepalive_header: self.keepalive_header,
            ..ServerConfig::default()
        })
    }
}

async fn until_signal(h: ServerHandle) -> synack_http::ServerStats {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    h.shutdown(Duration::from_secs(10)).await
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

/// Runs `synack serve` until Ctrl-C or SIGTERM, then shuts down gracefully.
/// What the listening line says the server speaks.
fn speaks(config: &ServerConfig) -> (&'static str, &'static str) {
    match (&config.tls, config.h2c) {
        (Some(_), _) => ("https", "HTTP/1.1 and h2 by ALPN"),
        (None, true) => ("http", "HTTP/1.1 and h2c"),
        (None, false) => ("http", "HTTP/1.1"),
    }
}

pub fn run_serve(args: &ServeArgs) -> io::Result<()> {
    let mut config = args.config()?;
    let routes = match &args.dir {
        Some(d) if !d.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", d.display()),
            ))
        }
        Some(d) => Routes::with_dir(d),
        None => Routes::new(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.transport.workers.max(2))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stats = if args.transport.kernel {
            let l = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| nc::naming(args.listen, e))?;
            let local = l.local_addr()?;
            let (tls, about, quic) = if args.http3 {
                let (t, a, q) = super::h3::tls_and_quic(args, local.ip())?;
                (t, a, Some(q))
            } else {
                let (t, a) = args.tls_config(args.listen.ip())?;
                (t, a, None)
            };
            config.tls = tls;
            let (scheme, protos) = speaks(&config);
            eprintln!(
                "synack serve: listening on {scheme}://{} (kernel TCP; {protos})",
                l.local_addr()?
            );
            about.iter().for_each(|l| eprintln!("{l}"));
            let h3 = match quic {
                Some(q) => Some(H3Server::kernel(local, q, routes.clone(), args.early_data)?),
                None => None,
            };
            h3.iter().for_each(|h| eprintln!("{}", h.line()));
            let alt = AltSvc::new(routes, h3.as_ref().map(|_| local.port()), ALT_SVC_MAX_AGE);
            let stats = until_signal(serve(l, config, alt)).await;
            if let Some(h) = h3 {
                h.close(args.verbose).await;
            }
            stats
        } else {
            let mut opts = args.transport.tun_opts(args.verbose);
            opts.pcap = args.pcap.clone();
            let stack = nc::open_stack(&opts)?;
            let addr = SocketAddr::new(opts.ip.addr, args.port);
            let l = TcpListener::bind(&stack, addr)
                .await
                .map_err(|e| nc::naming(addr, e))?;
            let (tls, about, quic) = if args.http3 {
                let (t, a, q) = super::h3::tls_and_quic(args, addr.ip())?;
                (t, a, Some(q))
            } else {
                let (t, a) = args.tls_config(addr.ip())?;
                (t, a, None)
            };
            config.tls = tls;
            let (scheme, protos) = speaks(&config);
            eprintln!(
                "synack serve: listening on {scheme}://{addr} (synack over {}; {protos})",
                opts.tun
            );
            about.iter().for_each(|l| eprintln!("{l}"));
            let h3 = match quic {
                Some(q) => {
                    Some(H3Server::synack(&stack, addr, q, routes.clone(), args.early_data).await?)
                }
                None => None,
            };
            h3.iter().for_each(|h| eprintln!("{}", h.line()));
            let alt = AltSvc::new(routes, h3.as_ref().map(|_| addr.port()), ALT_SVC_MAX_AGE);
            let stats = until_signal(serve(l, config, alt)).await;
            if let Some(h) = h3 {
                h.close(args.verbose).await;
            }
            stack.wait_idle(Duration::from_secs(5)).await;
            stack.flush_pcap()?;
            stats
        };
        if args.verbose {
            eprintln!(
                "synack serve: {} connections, {} requests ({:.2} per connection)",
                stats.connections,
                stats.requests,
                stats.requests_per_connection()
            );
            if stats.h2_connections + stats.tls_handshakes > 0 {
                eprintln!(
                    "synack serve: {} HTTP/2 connections, {} streams, {} GOAWAYs sent; \
                     {} TLS handshakes ({} failed), ALPN h2 {} http/1.1 {} none {}",
                    stats.h2_connections,
                    stats.h2_streams,
                    stats.goaways_sent,
                    stats.tls_handshakes,
                    stats.tls_handshake_failures,
                    stats.alpn_h2,
                    stats.alpn_http11,
                    stats.alpn_none
                );
            }
        }
        if args.stats {
            println!("{}", stats.to_json());
        }
        Ok(())
    })
}
