//! A two-host scenario on the simulated network: a client and a server joined by one link.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use synack_stack::sim::{HostId, Network, PathConfig};
use synack_stack::Interface;
use synack_tcp::{Config, ConnId, Duration, Instant, ListenerId, TraceRecord};

pub const CLIENT_IP: &str = "198.18.0.1";
pub const SERVER_IP: &str = "198.18.0.2";

pub struct Pair {
    pub net: Network<Interface>,
    pub client: HostId,
    pub server: HostId,
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Pair {
    /// Hosts with one-way delay `rtt/2` each way, both using `config`.
    pub fn new(seed: u64, rtt: Duration, config: Config) -> Pair {
        Pair::with_paths(
            seed,
            config.clone(),
            config,
            PathConfig::delay(rtt / 2),
            PathConfig::delay(rtt / 2),
        )
    }

    pub fn with_paths(
        seed: u64,
        client_cfg: Config,
        server_cfg: Config,
        c2s: PathConfig,
        s2c: PathConfig,
    ) -> Pair {
        let mut net = Network::new(seed);
        let ckey = key(seed, 1);
        let skey = key(seed, 2);
        let c = Interface::new(client_cfg, &[ip(CLIENT_IP)], ckey);
        let s = Interface::new(server_cfg, &[ip(SERVER_IP)], skey);
        let client = net.add_host("client", &[ip(CLIENT_IP)], c);
        let server = net.add_host("server", &[ip(SERVER_IP)], s);
        net.link(client, server, c2s, s2c);
        net.host_mut(client).tcp_mut().set_tracing(true);
        net.host_mut(server).tcp_mut().set_tracing(true);
        Pair {
            net,
            client,
            server,
        }
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    pub fn listen(&mut self, port: u16) -> ListenerId {
        let addr = SocketAddr::new(ip(SERVER_IP), port);
        self.net
            .host_mut(self.server)
            .tcp_mut()
            .listen(addr, 128)
            .unwrap()
    }

    pub fn connect(&mut self, port: u16) -> ConnId {
        let now = self.now();
        let id = self
            .net
            .host_mut(self.client)
            .tcp_mut()
            .connect(
                now,
                ip(CLIENT_IP),
                None,
                SocketAddr::new(ip(SERVER_IP), port),
            )
            .unwrap();
        self.net.flush();
        id
    }

    /// Step until `cond` holds, for at most `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&mut Pair) -> bool) -> bool {
        let deadline = self.now() + limit;
        loop {
            if cond(self) {
                return true;
            }
            if self.now() > deadline {
                return false;
            }
            match self.net.next_event() {
                Some(t) if t <= deadline => {
                    self.net.step();
                }
                _ => return cond(self),
            }
        }
    }

    pub fn client_trace(&mut self) -> Vec<TraceRecord> {
        self.net.host_mut(self.client).tcp_mut().drain_trace()
    }

    pub fn server_trace(&mut self) -> Vec<TraceRecord> {
        self.net.host_mut(self.server).tcp_mut().drain_trace()
    }
}

pub fn key(seed: u64, host: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&seed.to_le_bytes());
    k[8..].copy_from_slice(&host.to_le_bytes());
    k
}

/// A deterministic byte pattern for transfers (position-dependent, so shifts are caught).
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(7) as u8 ^ seed)
        .collect()
}

/// One side of a bulk exchange: what it still has to write, what it has read.
pub struct Flow {
    pub out: Vec<u8>,
    pub sent: usize,
    pub shut: bool,
    pub got: Vec<u8>,
    pub eof: bool,
    pub error: Option<synack_tcp::ConnectionError>,
}

impl Flow {
    pub fn new(out: Vec<u8>) -> Flow {
        Flow {
            out,
            sent: 0,
            shut: false,
            got: Vec::new(),
            eof: false,
            error: None,
        }
    }

    /// Write what fits, half-close when all is written, read what arrived.
    pub fn pump(&mut self, ep: &mut synack_tcp::Endpoint, now: Instant, id: ConnId) {
        let mut buf = vec![0u8; 64 * 1024];
        ep.with_conn(now, id, |c| {
            while self.sent < self.out.len() {
                match c.send(&self.out[self.sent..]) {
                    Ok(0) => break,
                    Ok(n) => self.sent += n,
                    Err(synack_tcp::SendError::Connection(e)) => {
                        self.error = Some(e);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if self.sent == self.out.len() && !self.shut {
                c.shutdown();
                self.shut = true;
            }
            loop {
                match c.recv(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => self.got.extend_from_slice(&buf[..n]),
                    Err(synack_tcp::RecvError::Finished) => {
                        self.eof = true;
                        break;
                    }
                    Err(synack_tcp::RecvError::Connection(e)) => {
                        self.error = Some(e);
                        break;
                    }
                    Err(_) => break,
                }
            }
        });
    }

    pub fn done(&self) -> bool {
        (self.eof && self.shut) || self.error.is_some()
    }
}

impl Pair {
    /// Connect to a listener on `port` and return (client conn, server conn) once accepted.
    pub fn open(&mut self, port: u16, limit: Duration) -> Option<(ConnId, ConnId)> {
        let l = self.listen(port);
        let c = self.connect(port);
        let mut s = None;
        let server = self.server;
        self.run_until(limit, |p| {
            s = p.net.host_mut(server).tcp_mut().accept(l);
            s.is_some()
        });
        s.map(|s| (c, s))
    }

    /// Run both flows to completion (or `limit`), pumping the applications after every step.
    pub fn exchange(
        &mut self,
        c: ConnId,
        s: ConnId,
        cf: &mut Flow,
        sf: &mut Flow,
        limit: Duration,
    ) -> bool {
        let (client, server) = (self.client, self.server);
        self.run_until(limit, |p| {
            let now = p.now();
            cf.pump(p.net.host_mut(client).tcp_mut(), now, c);
            sf.pump(p.net.host_mut(server).tcp_mut(), now, s);
            p.net.flush();
            cf.done() && sf.done()
        })
    }
}
