//! `synack serve` and `synack get`: the keep-alive HTTP/1.1 server and the pooled client of
//! `synack-http`, over a TUN device (synack's stack) or the kernel's sockets.

mod get;
mod h3;
mod serve;

use std::net::IpAddr;

use clap::Args;
use synack_stack::net::nc::{Cidr, TunOpts};

pub use get::{run_get, GetArgs, GET_EXAMPLES};
pub use serve::{run_serve, ServeArgs, SERVE_EXAMPLES};

/// Where the stack runs: a TUN device, or the kernel's sockets.
#[derive(Debug, Clone, Args)]
pub struct Transport {
    /// Use the kernel's TCP (tokio::net) instead of synack's stack.
    #[arg(long, conflicts_with_all = ["tun", "ip", "peer_ip"], help_heading = "Transport")]
    pub kernel: bool,

    /// The TUN device to create for synack's stack.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "tun0",
        help_heading = "Transport"
    )]
    pub tun: String,

    /// synack's address and the subnet of the TUN device.
    #[arg(
        long,
        value_name = "ADDR/PREFIX",
        default_value = "198.18.0.2/24",
        help_heading = "Transport"
    )]
    pub ip: Cidr,

    /// The kernel side's address on the TUN device [default: the first host of the subnet].
    #[arg(long, value_name = "ADDR", help_heading = "Transport")]
    pub peer_ip: Option<IpAddr>,

    /// The MTU of the TUN device.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 1500,
        help_heading = "Transport"
    )]
    pub mtu: u16,

    /// Move packets through the TUN device in batches, with the kernel's offloads
    /// (IFF_VNET_HDR: TCP segmentation, and UDP segmentation on Linux 6.2 and later): the
    /// datagrams or segments of one flow that the stack sends together leave in one write,
    /// and the kernel hands over a burst in one read.
    #[arg(long, conflicts_with = "kernel", help_heading = "Transport")]
    pub tun_offload: bool,
    /// Workers over TUN: shards of synack's stack, one queue each of a multiqueue TUN device.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        help_heading = "Transport"
    )]
    pub workers: usize,
}

/// Packets held for one write with `--tun-offload`.
const TUN_BATCH: usize = 64;

impl Transport {
    fn tun_opts(&self, verbose: bool) -> TunOpts {
        let mut t = TunOpts::new(&self.tun, self.ip);
        t.peer_ip = self.peer_ip;
        t.mtu = self.mtu;
        t.verbose = verbose;
        if self.tun_offload {
            t.device = synack_stack::tun::TunOptions {
                offload: true,
                batch: TUN_BATCH,
            };
        }
        t.workers = self.workers;
        t
    }
}

/// A duration flag: a bare number is seconds; `5s`, `500ms`, `1.5s`, `2min` work too.
fn duration(s: &str) -> Result<std::time::Duration, String> {
    synack_stack::sim::units::parse_duration(s)
}

/// `12.345 ms`.
fn ms(d: std::time::Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}
