//! The simulated network a scenario runs on: a client and a server joined by one link.

use std::cell::RefCell;
use std::fs::File;
use std::io::BufWriter;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::rc::Rc;

use synack_stack::pcap::PcapTap;
use synack_stack::sim::{HostId, Network};
use synack_stack::Interface;
use synack_tcp::{Config, Endpoint, FourTuple, Instant, State, Timer, TraceRecord};

use super::{DemoError, Settings};

/// The client's address (RFC 2544 benchmarking range, never routed).
pub const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
/// The server's address.
pub const SERVER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
/// The port the server listens on.
pub const SERVER_PORT: u16 = 80;

type Capture = Rc<RefCell<PcapTap<BufWriter<File>>>>;

/// Two hosts on a fresh network, tracing on, optionally captured.
pub struct World {
    pub net: Network<Interface>,
    pub client: HostId,
    pub server: HostId,
    /// Past this instant the scenario gives up.
    pub deadline: Instant,
    pcap: Option<Capture>,
    /// Where `--html` keeps the traces.
    recorder: Option<super::export::Recorder>,
}

/// A secret for a host's ISN and port generator, derived from the seed.
fn key(seed: u64, host: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&seed.to_le_bytes());
    k[8..].copy_from_slice(&host.to_le_bytes());
    k
}

impl World {
    /// The network of `settings`, with the client's interface captured to `pcap` if given.
    pub fn new(settings: &Settings, pcap: Option<&Path>) -> Result<World, DemoError> {
        let config = Config::default();
        let mut net = Network::new(settings.seed);
        let c = Interface::new(config.clone(), &[CLIENT_IP], key(settings.seed, 1));
        let s = Interface::new(config, &[SERVER_IP], key(settings.seed, 2));
        let client = net.add_host("client", &[CLIENT_IP], c);
        let server = net.add_host("server", &[SERVER_IP], s);
        net.link(client, server, settings.path.clone(), settings.path.clone());
        net.host_mut(client).tcp_mut().set_tracing(true);
        net.host_mut(server).tcp_mut().set_tracing(true);
        let pcap = match pcap {
            Some(path) => {
                let what = || format!("creating the capture {}", path.display());
                let file = File::create(path).map_err(|e| DemoError::Io(what(), e))?;
                let tap =
                    PcapTap::new(BufWriter::new(file)).map_err(|e| DemoError::Io(what(), e))?;
                let tap = Rc::new(RefCell::new(tap));
                net.tap(client, Box::new(tap.clone()));
                Some(tap)
            }
            None => None,
        };
        Ok(World {
            net,
            client,
            server,
            deadline: Instant::ZERO + settings.time_limit,
            pcap,
            recorder: settings.recorder.clone(),
        })
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    pub fn client_tcp(&mut self) -> &mut Endpoint {
        self.net.host_mut(self.client).tcp_mut()
    }

    pub fn server_tcp(&mut self) -> &mut Endpoint {
        self.net.host_mut(self.server).tcp_mut()
    }

    /// Where the server listens.
    pub fn server_addr(&self) -> SocketAddr {
        SocketAddr::new(SERVER_IP, SERVER_PORT)
    }

    /// The records the client and the server traced since the last call.
    pub fn drain_traces(&mut self) -> (Vec<TraceRecord>, Vec<TraceRecord>) {
        let c = self.client_tcp().drain_trace();
        let s = self.server_tcp().drain_trace();
        if let Some(r) = &self.recorder {
            r.records(0, &c);
            r.records(1, &s);
        }
        (c, s)
    }

    /// Every connection still held by either host, with its state.
    fn open_connections(&self) -> Vec<(&'static str, FourTuple, State, Option<Instant>)> {
        let mut v = Vec::new();
        for (who, id) in [("client", self.client), ("server", self.server)] {
            let tcp = self.net.host(id).tcp();
            for c in tcp.connections() {
                if let Some(conn) = tcp.conn(c) {
                    v.push((who, conn.tuple(), conn.state(), conn.timer(Timer::Close)));
                }
            }
        }
        v.sort_by_key(|&(who, t, ..)| (who, t.local, t.remote));
        v
    }

    /// Whether every connection left is in TIME-WAIT (and at least one is).
    pub fn only_time_wait(&self) -> bool {
        let open = self.open_connections();
        !open.is_empty() && open.iter().all(|c| c.2 == State::TimeWait)
    }

    /// What is still open, for an error message: "the server's connection 198.18.0.2:80 ->
    /// 198.18.0.1:49152 was in LAST-ACK, the client's ... in TIME-WAIT until t=611.3s".
    pub fn describe_connections(&self) -> String {
        let open = self.open_connections();
        if open.is_empty() {
            return "no connection was open".into();
        }
        let parts: Vec<String> = open
            .iter()
            .map(|&(who, t, state, close)| {
                let mut s = format!("the {who}'s connection {t} was in {state}");
                if state == State::TimeWait {
                    if let Some(end) = close {
                        s.push_str(&format!(" until t={end}s"));
                    }
                }
                s
            })
            .collect();
        format!("at t={}s {}", self.now(), parts.join(", "))
    }

    /// Detaches the capture, flushes it and returns how many packets it wrote.
    pub fn finish_capture(&mut self, path: &Path) -> Result<Option<u64>, DemoError> {
        let Some(tap) = self.pcap.take() else {
            return Ok(None);
        };
        drop(self.net.take_taps(self.client));
        let mut tap = tap.borrow_mut();
        tap.flush()
            .map_err(|e| DemoError::Io(format!("writing the capture {}", path.display()), e))?;
        Ok(Some(tap.written()))
    }
}
