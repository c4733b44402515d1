//! `synack listen` and `synack connect`: netcat over a TUN device, with synack's TCP on one
//! side and the Linux kernel (or whatever is routed there) on the other.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use synack_stack::net::nc::{self, Cidr, ConnectOpts, ListenOpts, TunOpts};
use synack_stack::sim::units::parse_duration;
use synack_tcp::Duration;

/// Where synack's stack sits: the TUN device and its addresses.
#[derive(Debug, Args)]
pub struct TunArgs {
    /// The TUN device to create (or attach to).
    #[arg(long, default_value = "tun0")]
    pub tun: String,
    /// synack's address and the subnet, e.g. 198.18.0.2/24.
    #[arg(long, value_name = "ADDR/PREFIX")]
    pub ip: Cidr,
    /// The kernel side's address (default: the first host address of the subnet).
    #[arg(long, value_name = "ADDR")]
    pub peer_ip: Option<IpAddr>,
    /// The MTU of the device and the stack.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u16,
    /// Capture every packet the stack sends and receives to a pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Print each connection's state changes to standard error.
    #[arg(short, long)]
    pub verbose: bool,
    /// Workers: shards of the stack, one queue each of a multiqueue TUN device.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
}

impl TunArgs {
    fn opts(&self) -> TunOpts {
        TunOpts {
            tun: self.tun.clone(),
            ip: self.ip,
            peer_ip: self.peer_ip,
            mtu: self.mtu,
            pcap: self.pcap.clone(),
            verbose: self.verbose,
            device: Default::default(),
            workers: self.workers,
        }
    }
}

/// `synack listen`: serve TCP on synack's stack over TUN.
#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub tun: TunArgs,
    /// The port to listen on.
    #[arg(long, default_value_t = 7000)]
    pub port: u16,
    /// Pipe standard input to one connection and print what arrives (instead of echoing).
    #[arg(long)]
    pub stdio: bool,
    /// Stop after this many connections.
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
}

/// `synack connect`: a TCP client on synack's stack over TUN, piping standard input and output.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub tun: TunArgs,
    /// Where to connect, e.g. 198.18.0.1:7000.
    pub remote: SocketAddr,
    /// How long the handshake may take (e.g. 5s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// A signal that stops a command: SIGINT (Ctrl-C) or SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// The exit status of a program a shell saw killed by it (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 128 + 2,
            Signal::Terminate => 128 + 15,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Stopped(Signal),
}

/// Completes at the first SIGINT or SIGTERM, saying which (in `caught`). The handlers are
/// installed before it returns, so a signal from then on stops the command gracefully rather
/// than killing it.
fn stop_signal(
    caught: std::sync::Arc<std::sync::Mutex<Option<Signal>>>,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        let which = tokio::select! {
            _ = int.recv() => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
        };
        *caught
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(which);
    })
}

/// Runs a command until it ends or a signal stops it (its connections closed and its capture
/// written whole).
fn run_until_signal<F, Fut>(command: F) -> std::io::Result<Outcome>
where
    F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<nc::Ended>>,
{
    let rt = runtime()?;
    rt.block_on(async {
        let caught = std::sync::Arc::default();
        let stop = stop_signal(std::sync::Arc::clone(&caught))?;
        let ended = command(Box::pin(stop)).await?;
        let sig = *caught
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(match (ended, sig) {
            (nc::Ended::Stopped, Some(s)) => Outcome::Stopped(s),
            _ => Outcome::Done,
        })
    })
}

pub fn listen(args: &ListenArgs) -> std::io::Result<Outcome> {
    let opts = ListenOpts {
        tun: args.tun.opts(),
        port: args.port,
        stdio: args.stdio,
        max_conns: args.max_conns,
    };
    run_until_signal(|stop| nc::listen_until(opts, stop))
}

pub fn connect(args: &ConnectArgs) -> std::io::Result<Outcome> {
    let opts = ConnectOpts {
        tun: args.tun.opts(),
        remote: args.remote,
        timeout: args.timeout,
    };
    run_until_signal(|stop| nc::connect_until(opts, stop))
}
