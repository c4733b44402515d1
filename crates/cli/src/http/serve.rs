//! `synack serve`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use synack_http::routes::Routes;
use synack_http::{serve, ServerConfig, ServerHandle};
use synack_stack::net::{nc, TcpListener};
use synack_stack::sim::units::parse_size;

use super::{duration, Transport};

/// Examples shown after the help of `synack serve`.
pub const SERVE_EXAMPLES: &str = "\
Examples:
  synack serve --tun tun0 --ip 198.18.0.2/24 --keepalive-header
      curl -v http://198.18.0.2/ http://198.18.0.2/bytes/1000
  synack serve --kernel --listen 127.0.0.1:8080 --keepalive-timeout 5s --keepalive-requests 100
  synack serve --kernel --listen 127.0.0.1:8080 ./public     serve a directory too";

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

impl ServeArgs {
    fn config(&self) -> io::Result<ServerConfig> {
        Ok(ServerConfig {
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
pub fn run_serve(args: &ServeArgs) -> io::Result<()> {
    let config = args.config()?;
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
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let stats = if args.transport.kernel {
            let l = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| nc::naming(args.listen, e))?;
            eprintln!(
                "synack serve: listening on http://{} (kernel TCP)",
                l.local_addr()?
            );
            until_signal(serve(l, config, routes)).await
        } else {
            let mut opts = args.transport.tun_opts(args.verbose);
            opts.pcap = args.pcap.clone();
            let stack = nc::open_stack(&opts)?;
            let addr = SocketAddr::new(opts.ip.addr, args.port);
            let l = TcpListener::bind(&stack, addr)
                .await
                .map_err(|e| nc::naming(addr, e))?;
            eprintln!(
                "synack serve: listening on http://{addr} (synack over {})",
                opts.tun
            );
            let stats = until_signal(serve(l, config, routes)).await;
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
        }
        if args.stats {
            println!("{}", stats.to_json());
        }
        Ok(())
    })
}
