//! `synack`: a userspace TCP/IP stack that shows every connection's life.

mod bench;
mod demo;
mod http;
mod nc;
mod trace;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A userspace TCP/IP stack that shows every connection's life.
///
/// synack makes what a TCP connection does observable: the 3-way handshake, the data and its
/// acknowledgments, retransmissions, the 4-way close and TIME-WAIT, each drawn as a ladder of
/// segments with both sides' states, and what each phase costs in round trips.
#[derive(Debug, Parser)]
#[command(name = "synack", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a connection's life on a simulated network: handshake, request, reply, close
    #[command(long_about = demo::LONG_ABOUT, after_help = demo::EXAMPLES)]
    Demo(demo::DemoArgs),
    /// Listen for TCP on synack's stack over a TUN device (netcat-like; echoes by default)
    Listen(nc::ListenArgs),
    /// Connect over a TUN device with synack's stack and pipe standard input and output
    Connect(nc::ConnectArgs),
    /// Serve HTTP/1.1 (keep-alive) and HTTP/2, cleartext or TLS, over TUN or kernel sockets
    #[command(after_help = http::SERVE_EXAMPLES)]
    Serve(http::ServeArgs),
    /// Fetch URLs in order through a connection pool, showing each connection's reuse
    #[command(after_help = http::GET_EXAMPLES)]
    Get(http::GetArgs),
    /// Measure synack's stack through its driver: churn, bulk, ping-pong and HTTP, on 1 and 2 workers
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::BenchArgs),
    /// Draw the connections of a capture (pcap, pcapng) or a live interface as ladders, with phases in RTTs
    #[command(after_help = trace::EXAMPLES)]
    Trace(trace::TraceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Listen(args) => stopped("listen", nc::listen(&args)),
        Command::Connect(args) => stopped("connect", nc::connect(&args)),
        Command::Serve(args) => report("serve", http::run_serve(&args)),
        Command::Get(args) => report("get", http::run_get(&args)),
        Command::Bench(args) => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            report("bench", bench::run(&args, &mut out))
        }
        Command::Trace(args) => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            match trace::run(&args, &mut out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    let _ = out.flush();
                    eprintln!("synack trace: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo(args) => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            match demo::run(&args, &mut out) {
                Ok(()) => {
                    let _ = out.flush();
                    ExitCode::SUCCESS
                }
                // `synack demo | head`: the reader has what it wanted.
                Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
                Err(e) => {
                    let _ = out.flush();
                    eprintln!("synack demo: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// As [`report`], for a command a signal may stop: it exits as a shell expects of a program
/// the signal killed (130 for SIGINT, 143 for SIGTERM), but only after finishing cleanly.
fn stopped(what: &str, r: io::Result<nc::Outcome>) -> ExitCode {
    match r {
        Ok(nc::Outcome::Stopped(sig)) => ExitCode::from(sig.exit_code()),
        Ok(nc::Outcome::Done) => ExitCode::SUCCESS,
        Err(e) => report(what, Err(e)),
    }
}

fn report(what: &str, r: io::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synack {what}: error: {e}");
            ExitCode::FAILURE
        }
    }
}
