//! Async sockets shaped like [`tokio::net`]'s, over the sans-IO core.
//!
//! The layers, bottom up, and where a packet goes:
//!
//! 1. the TCP [`Endpoint`](synack_tcp::Endpoint) (crate `synack-tcp`): segments and `now` in,
//!    segments and deadlines out, no I/O;
//! 2. the [`Interface`] (`iface.rs`): IP around it (and UDP, ICMP);
//! 3. the `Host` (`net/host.rs`): the interface plus the wakers of the tasks using its sockets.
//!    **Every packet enters through `Host::receive` and leaves through `Host::transmit`**,
//!    whatever the device; each marks the connection it touched (by its flow), as do the
//!    timers that come due, and `Host::wake_ready` looks at those connections alone (a ready
//!    set: a wake-up costs what happened, not the number of connections open);
//! 4. a driver task per shard, which moves packets between the device and the host: it feeds
//!    what arrives to the host, runs its timers when due, hands what it sends to the device,
//!    wakes the tasks whose socket became ready, then sleeps until a packet arrives, a socket
//!    command kicks it, or the next deadline comes.
//!
//! A [`Stack`] is a handle to the shards of one host. Each shard is a host behind its own
//! mutex, which only its driver and the commands of the sockets living on it take: with
//! several workers ([`Stack::new_multiqueue`], [`StackConfig::workers`]) each shard has its
//! own device queue and driver, a connection lives on the shard its flow hashes to
//! ([`shard_of`]), and nothing is shared on the packet path. Sockets ([`TcpListener`],
//! [`TcpStream`], [`UdpSocket`]) only run commands on their shard's host and register wakers.
//!
//! Time is tokio's: the core sees `Instant::from_micros(tokio::time::Instant::now() - epoch)`,
//! so under a runtime with paused time (`#[tokio::test(start_paused = true)]`) the stack runs on
//! tokio's virtual clock, which jumps to the next deadline whenever every task is idle.
//!
//! A stack runs over either
//! - a [`Device`] ([`Stack::new`], [`Stack::new_multiqueue`]): a TUN device
//!   ([`crate::tun::TunDevice`], multiqueue with [`crate::tun::TunDevice::create_queues`]) or
//!   an in-memory [`pipe`] ([`pipe_multiqueue`]), optionally with an impairment layer (loss,
//!   reordering, delay, duplication, corruption) between the device and the interface; or
//! - a host of a [`SimNet`]: the deterministic simulated network of [`crate::sim`], whose
//!   hosts are the same `Host`s, driven by one task under tokio's clock (one shard: the
//!   network steps every host in one deterministic order).
//!
//! ```
//! use synack_stack::net::{SimNet, TcpListener, TcpStream};
//! use synack_stack::sim::PathConfig;
//! use synack_tcp::{Config, Duration};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() -> std::io::Result<()> {
//!     let net = SimNet::new(1);
//!     let a = net.add_host("a", &["198.18.0.1".parse().unwrap()], Config::default());
//!     let b = net.add_host("b", &["198.18.0.2".parse().unwrap()], Config::default());
//!     let half = PathConfig::delay(Duration::from_millis(5));
//!     net.link(&a, &b, half.clone(), half);
//!
//!     let listener = TcpListener::bind(&b, "198.18.0.2:7").await?;
//!     tokio::spawn(async move {
//!         let (mut s, _) = listener.accept().await.unwrap();
//!         let mut buf = [0; 5];
//!         s.read_exact(&mut buf).await.unwrap();
//!         s.write_all(&buf).await.unwrap();
//!     });
//!     let mut s = TcpStream::connect(&a, "198.18.0.2:7").await?;
//!     s.write_all(b"hello").await?;
//!     let mut buf = [0; 5];
//!     s.read_exact(&mut buf).await?;
//!     assert_eq!(&buf, b"hello");
//!     Ok(())
//! }
//! ```

mod addr;
mod device;
mod flow;
mod host;
pub mod nc;
mod tcp;
mod udp;

pub use addr::ToSocketAddr;
pub use device::{pipe, pipe_multiqueue, Device, PipeDevice};
pub use flow::{rx_shard, shard_of, tx_shard};
pub use host::TraceHook;
pub use tcp::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, TcpListener, TcpStream, WriteHalf};
pub use udp::{UdpSocket, UdpStats};

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};

use synack_tcp::time::Duration;
use synack_tcp::{Config, Instant};
use tokio::sync::{mpsc, Notify};

use crate::pcap::PcapWriter;
use crate::sim::rng::mix64;
use crate::sim::{HostId, NetStats, Network, Node, PathConfig, PathStats, Tap};
use crate::{IfaceStats, Interface, RxMeta, TxMeta};

use device::Impairment;
use host::Host;

/// How to build a [`Stack`] over a [`Device`].
pub struct StackConfig {
    /// The TCP settings; `tcp.mtu` is the interface's MTU.
    pub tcp: Config,
    /// The host's own addresses (the stack's side of a TUN device, not the kernel's).
    pub addrs: Vec<IpAddr>,
    /// The key of the ISNs and ephemeral ports (RFC 6528, RFC 6056); `None` draws one from
    /// the operating system's random number generator ([`Stack::new`] fails if it cannot).
    pub secret: Option<[u8; 16]>,
    /// Impairments of the packets from the device to the stack.
    pub impair_rx: Option<PathConfig>,
    /// Impairments of the packets from the stack to the device.
    pub impair_tx: Option<PathConfig>,
    /// The seed of the impairment layer's random streams.
    pub impair_seed: u64,
    /// A capture of what the stack sees: packets delivered to it (after receive impairments)
    /// and packets it emits (before send impairments), as the simulator's taps record them.
    pub pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
    /// Shards: sans-IO stacks, each with its own driver task and device queue, that share
    /// nothing on the packet path (see [`Stack::new_multiqueue`]). 1 (the default) for
    /// [`Stack::new`].
    pub workers: usize,
}

impl StackConfig {
    /// A stack with these addresses and default TCP settings, no impairment, no capture.
    pub fn new(addrs: &[IpAddr]) -> StackConfig {
        StackConfig {
            tcp: Config::default(),
            addrs: addrs.to_vec(),
            secret: None,
            impair_rx: None,
            impair_tx: None,
            impair_seed: 0,
            pcap: None,
            workers: 1,
        }
    }
}

/// Counters of the driver of a device stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Packets read from the device.
    pub rx_packets: u64,
    /// Packets written to the device.
    pub tx_packets: u64,
    /// Packets the device refused with an error (dropped).
    pub tx_errors: u64,
    /// Packets dropped because the device stayed busy and the backlog was full.
    pub tx_dropped: u64,
    /// Driver iterations (each one: receive a batch, timers, transmit, wake).
    pub iterations: u64,
    /// Packets this shard's queue received that belong to another shard's flow, handed on to
    /// that shard (see [`shard_of`]).
    pub rx_forwarded: u64,
    /// Packets another shard handed to this one.
    pub rx_from_shards: u64,
}

/// Packets read per driver iteration before timers and output get their turn.
const RX_BATCH: usize = 64;
/// Packets kept while the device cannot take them (beyond this they are dropped).
const BACKLOG_LIMIT: usize = 4096;

/// The part of a device stack the sockets share with the driver.
struct DeviceCore {
    host: Host,
    rx_impair: Option<Impairment>,
    tx_impair: Option<Impairment>,
    pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
    pcap_error: bool,
    error: Option<(io::ErrorKind, String)>,
    stats: DeviceStats,
}

impl DeviceCore {
    fn capture(
        pcap: &mut Option<PcapWriter<Box<dyn Write + Send>>>,
        err: &mut bool,
        now: Instant,
        p: &[u8],
    ) {
        if let Some(w) = pcap.as_mut() {
            if !*err && w.write_packet(now, p).is_err() {
                *err = true;
            }
        }
    }

    /// A packet read from the device, with what the device knew of it.
    fn input(&mut self, now: Instant, p: &[u8], meta: RxMeta) {
        self.stats.rx_packets += 1;
        match self.rx_impair.as_mut() {
            Some(imp) => imp.offer_with(now, p, meta),
            None => {
                Self::capture(&mut self.pcap, &mut self.pcap_error, now, p);
                self.host.receive_with(now, p, meta);
            }
        }
    }

    /// Delivers the packets the receive impairment releases now, and runs due timers.
    fn advance(&mut self, now: Instant) {
        if let Some(imp) = self.rx_impair.as_mut() {
            while let Some((p, meta)) = imp.pop_due_with(now) {
                Self::capture(&mut self.pcap, &mut self.pcap_error, now, &p);
                self.host.receive_with(now, &p, meta);
            }
        }
        if self.host.poll_timeout().is_some_and(|t| t <= now) {
            self.host.handle_timeout(now);
        }
    }

    /// Everything the host sends now, through the send impairment, to `send`.
    fn output(&mut self, now: Instant, send: &mut dyn FnMut(&[u8], TxMeta)) {
        let DeviceCore {
            host,
            tx_impair,
            pcap,
            pcap_error,
            ..
        } = self;
        host.transmit_with(now, &mut |p: &[u8], meta| {
            Self::capture(pcap, pcap_error, now, p);
            match tx_impair.as_mut() {
                // (No super-segments behind a send impairment: see `new_multiqueue_on`.)
                Some(imp) => imp.offer(now, p),
                None => send(p, meta),
            }
        });
        if let Some(imp) = tx_impair.as_mut() {
            while let Some(p) = imp.pop_due(now) {
                send(&p, TxMeta::default());
            }
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        [
            self.host.poll_timeout(),
            self.rx_impair.as_ref().and_then(Impairment::next_due),
            self.tx_impair.as_ref().and_then(Impairment::next_due),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// The simulated network of a [`SimNet`].
struct SimCore {
    net: Network<Host>,
}

// SAFETY: `Network<Host>` is not `Send` only because its taps are `Box<dyn Tap>`, which need
// not be `Send`. Every other part of it (hosts, paths, packets in flight) is `Send`. A
// `SimCore` is only reachable through its `SimNet`, which adds taps only through
// `SimNet::tap`, whose argument must be `Send`, and never hands the network or its taps out.
// So every value inside is `Send`, and moving the whole to another thread is sound.
unsafe impl Send for SimCore {}

enum Core {
    Device(Box<DeviceCore>),
    Sim(Box<SimCore>),
}

impl Core {
    fn host(&mut self, idx: usize) -> &mut Host {
        match self {
            Core::Device(d) => &mut d.host,
            Core::Sim(s) => s.net.host_mut(HostId(idx)),
        }
    }

    /// Brings the simulated network up to `now` before a socket command, so that the command
    /// sees every event due before it.
    fn catch_up(&mut self, now: Instant) {
        if let Core::Sim(s) = self {
            // Also moves the network's clock to `now`, so that what the command sends is
            // emitted at `now` by the driver's next flush.
            s.net.run_until(now);
            for id in s.net.host_ids().collect::<Vec<_>>() {
                s.net.host_mut(id).wake_ready();
            }
        }
    }

    fn error(&self) -> Option<io::Error> {
        match self {
            Core::Device(d) => d
                .error
                .as_ref()
                .map(|(k, m)| io::Error::new(*k, format!("the stack's device failed: {m}"))),
            Core::Sim(_) => None,
        }
    }
}

struct Shared {
    core: Mutex<Core>,
    notify: Arc<Notify>,
    epoch: tokio::time::Instant,
}

/// The shards of one stack (one for a simulated network or a single-queue device).
struct Group {
    shards: Vec<Arc<Shared>>,
    /// Round robin of the shards that our own connects start on.
    next: AtomicUsize,
}

impl Group {
    fn new(shards: Vec<Arc<Shared>>) -> Arc<Group> {
        Arc::new(Group {
            shards,
            next: AtomicUsize::new(0),
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Instant {
        let us = tokio::time::Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros();
        Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    fn deadline(&self, t: Instant) -> tokio::time::Instant {
        let far = Duration::from_secs(86_400 * 365);
        let d = Duration::from_micros(t.as_micros()).min(far);
        self.epoch + d
    }
}

/// One host's stack: a cheap handle (clone it freely) to the core and its driver.
///
/// A stack of several workers ([`Stack::new_multiqueue`]) is as many shards, each a sans-IO
/// [`Interface`] with its own driver task and device queue; a connection lives on the shard its
/// flow hashes to ([`shard_of`]). A handle refers to one shard (the first, unless it came from
/// [`shard`](Self::shard) or a connection); sockets made through it span the stack: a listener
/// listens on every shard, a connect picks the next shard in turn and a local port whose flow
/// hashes to it. The counters, [`with_interface`](Self::with_interface) and
/// [`set_trace_hook`](Self::set_trace_hook) are the handle's shard's (see
/// [`shards`](Self::shards)).
///
/// When every handle (and every socket, which holds one) is gone, the driver goes on until
/// the connections still closing are CLOSED or in TIME-WAIT, then stops. It runs on the
/// runtime it was spawned on: when that runtime shuts down, everything stops where it is (use
/// [`wait_idle`](Self::wait_idle) before leaving `main`).
#[derive(Clone)]
pub struct Stack {
    group: Arc<Group>,
    shard: usize,
    /// Made by [`Stack::shard`]: sockets made through it live on its shard alone.
    pinned: bool,
    host: usize,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("host", &self.host)
            .field("shard", &self.shard)
            .field("addrs", &self.addrs())
            .finish()
    }
}

/// A key for the ISNs and ephemeral ports, from the operating system's random number generator
/// (RFC 6528 §3: the secret key "SHOULD be ... a random number"; RFC 4086 §7.1.2).
///
/// Without a working OS generator there is no key an attacker cannot guess (the clock and the
/// process id are not one), so the stack is not made: an error says why.
fn random_secret() -> io::Result<[u8; 16]> {
    secret_from(getrandom::fill)
}

/// A 16-byte key filled by `source`, or the error it reported.
fn secret_from(
    source: impl FnOnce(&mut [u8]) -> Result<(), getrandom::Error>,
) -> io::Result<[u8; 16]> {
    let mut key = [0u8; 16];
    source(&mut key).map_err(|e| {
        io::Error::other(format!(
            "no secret for the ISNs and ephemeral ports: the operating system's random number \
             generator failed ({e}); set StackConfig::secret to supply one"
        ))
    })?;
    Ok(key)
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn a_failing_random_source_is_an_error_not_a_weaker_key() {
        let e = secret_from(|_| Err(getrandom::Error::UNSUPPORTED)).unwrap_err();
        assert!(
            e.to_string().contains("random number generator failed"),
            "{e}"
        );
    }

    #[test]
    fn the_key_is_what_the_source_gave() {
        let key = secret_from(|b| {
            b.copy_from_slice(&[7; 16]);
            Ok(())
        })
        .unwrap();
        assert_eq!(key, [7; 16]);
        assert_ne!(random_secret().unwrap(), random_secret().unwrap());
    }
}

fn no_runtime() -> io::Error {
    io::Error::other("a synack Stack must be made inside a tokio runtime")
}

impl Stack {
    /// A stack over `device`, its driver spawned on the current tokio runtime.
    /// `config.workers` must be 1 (a device of one queue); see
    /// [`new_multiqueue`](Self::new_multiqueue).
    pub fn new<D: Device>(device: D, config: StackConfig) -> io::Result<Stack> {
        if config.workers != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a stack of several workers needs a device queue each (Stack::new_multiqueue)",
            ));
        }
        Stack::new_multiqueue(vec![device], config)
    }

    /// A stack of one shard per device queue (`config.workers` is 1 or `queues.len()`), each
    /// with its own driver task on the current tokio runtime (a multi-thread runtime runs them
    /// on its workers in parallel). Each shard reads and writes its own queue alone; a packet
    /// that arrives on a queue whose shard does not own its flow (a TUN device's first packet
    /// of a flow, which the kernel spreads by its own hash) is handed to the owner over a
    /// channel, and the owner's replies then teach the kernel the owner's queue. Nothing else
    /// is shared: no lock on the packet path. A capture ([`StackConfig::pcap`]) needs one shard.
    pub fn new_multiqueue<D: Device>(queues: Vec<D>, config: StackConfig) -> io::Result<Stack> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| no_runtime())?;
        Stack::new_multiqueue_on(queues, config, &[handle])
    }

    /// As [`new_multiqueue`](Self::new_multiqueue), the driver of shard `i` spawned on
    /// `runtimes[i % runtimes.len()]`: with one current-thread runtime per core, a shard's
    /// packets, and the tasks of the sockets made through [`shard`](Self::shard)`(i)` on that
    /// runtime, never leave their thread (thread per core).
    pub fn new_multiqueue_on<D: Device>(
        queues: Vec<D>,
        config: StackConfig,
        runtimes: &[tokio::runtime::Handle],
    ) -> io::Result<Stack> {
        if runtimes.is_empty() {
            return Err(no_runtime());
        }
        let n = queues.len();
        if n == 0 || (config.workers != 1 && config.workers != n) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} device queues for {} workers: give one queue per worker",
                    n, config.workers
                ),
            ));
        }
        if n > 1 && config.pcap.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a capture (StackConfig::pcap) needs a stack of one worker",
            ));
        }
        let secret = match config.secret {
            Some(s) => s,
            None => random_secret()?,
        };
        let seed = config.impair_seed;
        let epoch = tokio::time::Instant::now();
        let mut pcap = config.pcap;
        let mut shards = Vec::with_capacity(n);
        for (i, dev) in queues.iter().enumerate() {
            let shard_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut iface = Interface::new(config.tcp.clone(), &config.addrs, secret);
            // What the device does for the stack: checksums, and TCP segmentation (TSO),
            // which the send impairment (a packet at a time) leaves off.
            iface.set_checksum(dev.checksum_caps());
            if config.impair_tx.is_none() {
                iface.set_tso_max(dev.tso_max());
            }
            let core = DeviceCore {
                host: Host::new(iface),
                rx_impair: config
                    .impair_rx
                    .clone()
                    .map(|c| Impairment::new(c, mix64(shard_seed ^ 0x7278))),
                tx_impair: config
                    .impair_tx
                    .clone()
                    .map(|c| Impairment::new(c, mix64(shard_seed ^ 0x7478))),
                pcap: pcap.take(),
                pcap_error: false,
                error: None,
                stats: DeviceStats::default(),
            };
            shards.push(Arc::new(Shared {
                core: Mutex::new(Core::Device(Box::new(core))),
                notify: Arc::new(Notify::new()),
                epoch,
            }));
        }
        let group = Group::new(shards);
        let mut steers = Steer::mesh(n);
        for (i, dev) in queues.into_iter().enumerate().rev() {
            let shared = group.shards[i].clone();
            let notify = shared.notify.clone();
            let steer = steers.pop().flatten();
            runtimes[i % runtimes.len()].spawn(device_driver(
                shared,
                Arc::downgrade(&group),
                notify,
                dev,
                steer,
            ));
        }
        Ok(Stack {
            group,
            shard: 0,
            pinned: false,
            host: 0,
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.group.shards[self.shard]
    }

    /// The number of shards (workers) of the stack.
    pub fn workers(&self) -> usize {
        self.group.shards.len()
    }

    /// Which shard this handle refers to.
    pub fn shard_index(&self) -> usize {
        self.shard
    }

    /// A handle to shard `i` of the stack, pinned to it: its counters and interface, and the
    /// sockets made through it live on shard `i` alone (a listener takes the connections whose
    /// flows hash to it, as with `SO_REUSEPORT` per worker; a connect picks a port whose flow
    /// hashes to it).
    ///
    /// # Panics
    /// If `i` is not below [`workers`](Self::workers).
    pub fn shard(&self, i: usize) -> Stack {
        assert!(i < self.workers(), "shard {i} of {}", self.workers());
        Stack {
            group: self.group.clone(),
            shard: i,
            pinned: true,
            host: self.host,
        }
    }

    /// A handle to every shard, in order.
    pub fn shards(&self) -> Vec<Stack> {
        (0..self.workers()).map(|i| self.shard(i)).collect()
    }

    /// The shards a listener made through this handle listens on: this one if pinned, else
    /// all.
    pub(crate) fn listen_shards(&self) -> Vec<Stack> {
        if self.pinned {
            vec![self.clone()]
        } else {
            self.shards()
        }
    }

    /// The shard our next active open starts on (round robin).
    pub(crate) fn next_shard(&self) -> Stack {
        let n = self.workers();
        if n == 1 || self.pinned {
            return self.clone();
        }
        let i = self.group.next.fetch_add(1, Ordering::Relaxed) % n;
        self.shard(i)
    }

    /// Runs a socket command on the host: the simulated network is first brought up to now.
    /// Fails if the device died.
    pub(crate) fn with_host<R>(&self, f: impl FnOnce(&mut Host, Instant) -> R) -> io::Result<R> {
        let shared = self.shared();
        let mut core = shared.lock();
        if let Some(e) = core.error() {
            return Err(e);
        }
        let now = shared.now();
        core.catch_up(now);
        Ok(f(core.host(self.host), now))
    }

    /// As [`with_host`](Self::with_host), for closing paths that must run anyway.
    pub(crate) fn with_host_even_if_dead<R>(&self, f: impl FnOnce(&mut Host, Instant) -> R) -> R {
        let shared = self.shared();
        let mut core = shared.lock();
        let now = shared.now();
        core.catch_up(now);
        f(core.host(self.host), now)
    }

    /// Tells the driver that a socket command may have produced output or new deadlines.
    pub(crate) fn kick(&self) {
        self.shared().notify.notify_one();
    }

    /// Whether a connection is still open or closing (not CLOSED nor in TIME-WAIT), on any
    /// shard.
    pub fn is_busy(&self) -> bool {
        self.shards()
            .iter()
            .any(|s| s.with_host_even_if_dead(|h, _| h.busy()))
    }

    fn any_error(&self) -> bool {
        self.group.shards.iter().any(|s| s.lock().error().is_some())
    }

    /// Waits, at most `limit`, until no connection is open or closing
    /// ([`is_busy`](Self::is_busy) is false); returns whether it got there. Checks every
    /// 10 ms.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if !self.is_busy() || self.any_error() {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The stack's clock: time since its epoch, as the core sees it.
    pub fn now(&self) -> Instant {
        self.shared().now()
    }

    /// The host's addresses.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.with_host_even_if_dead(|h, _| h.iface.addrs().to_vec())
    }

    /// Runs `f` on the host's interface (to read its TCP endpoint's state or statistics, turn
    /// tracing on, change the configuration); the driver is kicked afterwards.
    pub fn with_interface<R>(&self, f: impl FnOnce(&mut Interface) -> R) -> R {
        let r = self.with_host_even_if_dead(|h, _| {
            h.mark_all();
            f(&mut h.iface)
        });
        self.kick();
        r
    }

    /// The interface's counters.
    pub fn iface_stats(&self) -> IfaceStats {
        self.with_host_even_if_dead(|h, _| h.iface.stats())
    }

    /// The TCP endpoint's counters.
    pub fn tcp_stats(&self) -> synack_tcp::endpoint::Stats {
        self.with_host_even_if_dead(|h, _| h.iface.tcp().stats())
    }

    /// How many times the driver looked at a connection to wake its tasks, in total: it looks
    /// only at the connections a packet, a timer or a command touched, so this grows with the
    /// traffic, not with the connections open.
    pub fn conns_examined(&self) -> u64 {
        self.with_host_even_if_dead(|h, _| h.examined)
    }

    /// The UDP layer's counters.
    pub fn udp_stats(&self) -> UdpStats {
        self.with_host_even_if_dead(|h, _| h.iface.udp().stats())
    }

    /// The device driver's counters (`None` on a simulated network).
    pub fn device_stats(&self) -> Option<DeviceStats> {
        match &*self.shared().lock() {
            Core::Device(d) => Some(d.stats),
            Core::Sim(_) => None,
        }
    }

    /// The impairment layer's counters, receive then send direction (each `None` when that
    /// direction is not impaired, and both on a simulated network).
    pub fn impairment_stats(&self) -> (Option<PathStats>, Option<PathStats>) {
        match &*self.shared().lock() {
            Core::Device(d) => (
                d.rx_impair.as_ref().map(|i| i.stats),
                d.tx_impair.as_ref().map(|i| i.stats),
            ),
            Core::Sim(_) => (None, None),
        }
    }

    /// Calls `hook` with every trace record of the host's TCP (segments, state changes,
    /// retransmissions) as the driver sees them; `None` stops tracing.
    pub fn set_trace_hook(&self, hook: Option<TraceHook>) {
        self.with_host_even_if_dead(|h, _| {
            h.iface.tcp_mut().set_tracing(hook.is_some());
            h.trace_hook = hook;
        });
    }

    /// Flushes the capture given in [`StackConfig::pcap`], if any.
    pub fn flush_pcap(&self) -> io::Result<()> {
        match &mut *self.shared().lock() {
            Core::Device(d) => match d.pcap.as_mut() {
                Some(_) if d.pcap_error => Err(io::Error::other("a pcap write failed earlier")),
                Some(w) => w.flush(),
                None => Ok(()),
            },
            Core::Sim(_) => Ok(()),
        }
    }

    fn same_net(&self, net: &SimNet) -> HostId {
        assert!(
            Arc::ptr_eq(&self.group, &net.group),
            "the stack is not a host of this SimNet"
        );
        HostId(self.host)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // The drivers check whether this was the last owner.
        for s in &self.group.shards {
            s.notify.notify_one();
        }
    }
}

impl Drop for SimNet {
    fn drop(&mut self) {
        self.group.shards[0].notify.notify_one();
    }
}

/// The channels over which the shards of a stack hand each other packets that arrived on the
/// wrong queue.
struct Steer {
    me: usize,
    peers: Vec<mpsc::UnboundedSender<(Vec<u8>, RxMeta)>>,
    rx: mpsc::UnboundedReceiver<(Vec<u8>, RxMeta)>,
}

impl Steer {
    /// One `Steer` per shard (none for a single shard).
    fn mesh(n: usize) -> Vec<Option<Steer>> {
        if n <= 1 {
            return vec![None];
        }
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::unbounded_channel()).unzip();
        rxs.into_iter()
            .enumerate()
            .map(|(me, rx)| {
                Some(Steer {
                    me,
                    peers: txs.clone(),
                    rx,
                })
            })
            .collect()
    }

    /// Whether `p`, read from this shard's queue, is another shard's: then it is handed on.
    fn forward(&self, p: &[u8], meta: RxMeta) -> bool {
        let owner = flow::rx_shard(p, self.peers.len());
        if owner == self.me {
            return false;
        }
        // A closed channel means that shard's driver stopped: the packet is dropped.
        let _ = self.peers[owner].send((p.to_vec(), meta));
        true
    }
}

async fn steered(steer: &mut Option<Steer>) -> Option<(Vec<u8>, RxMeta)> {
    match steer {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends `p` to the device now if it takes it, else keeps it (in order) for later.
fn send_or_keep<D: Device>(
    dev: &mut D,
    backlog: &mut VecDeque<(Vec<u8>, TxMeta)>,
    stats: &mut DeviceStats,
    p: &[u8],
    meta: TxMeta,
) {
    if backlog.is_empty() {
        let mut cx = Context::from_waker(Waker::noop());
        match dev.poll_send_with(&mut cx, p, meta) {
            Poll::Ready(Ok(())) => {
                stats.tx_packets += 1;
                return;
            }
            Poll::Ready(Err(_)) => {
                stats.tx_errors += 1;
                return;
            }
            Poll::Pending => {}
        }
    }
    if backlog.len() < BACKLOG_LIMIT {
        backlog.push_back((p.to_vec(), meta));
    } else {
        stats.tx_dropped += 1;
    }
}

/// What woke the device driver.
enum DevEvent {
    Received(io::Result<usize>, RxMeta),
    Drained { sent: u64, errors: u64 },
}

/// The driver of a device stack. See the [module documentation](self).
async fn device_driver<D: Device>(
    shared: Arc<Shared>,
    group: Weak<Group>,
    notify: Arc<Notify>,
    mut dev: D,
    mut steer: Option<Steer>,
) {
    // Large enough for any packet a TUN device can hand over.
    let mut buf = vec![0u8; 65_536];
    let mut held: Option<(io::Result<usize>, RxMeta)> = None;
    let mut backlog: VecDeque<(Vec<u8>, TxMeta)> = VecDeque::new();
    let mut drained = (0u64, 0u64);
    let mut from_shards: Vec<(Vec<u8>, RxMeta)> = Vec::new();
    loop {
        let deadline = {
            let mut guard = shared.lock();
            let now = shared.now();
            let Core::Device(core) = &mut *guard else {
                return;
            };
            let orphaned = group.strong_count() == 0;
            if orphaned && !core.host.busy() {
                return;
            }
            core.stats.iterations += 1;
            core.stats.tx_packets += drained.0;
            core.stats.tx_errors += drained.1;
            drained = (0, 0);
            let mut fatal = None;
            // Packets other shards handed on first: they left the device before what this
            // shard's queue holds now, so a flow whose packets moved between queues (the
            // kernel picks a TUN queue by a hash of its own, which may change as a
            // connection starts) keeps its order as far as this shard can tell.
            if let Some(s) = steer.as_mut() {
                while let Ok(p) = s.rx.try_recv() {
                    from_shards.push(p);
                }
            }
            for (p, meta) in from_shards.drain(..) {
                core.stats.rx_from_shards += 1;
                core.input(now, &p, meta);
            }
            // Where a packet enters: from this shard's queue (handed on if another shard owns
            // its flow) or from another shard.
            let input = |core: &mut DeviceCore, p: &[u8], meta| match steer.as_ref() {
                Some(s) if s.forward(p, meta) => core.stats.rx_forwarded += 1,
                _ => core.input(now, p, meta),
            };
            match held.take() {
                Some((Ok(n), meta)) => input(core, &buf[..n], meta),
                Some((Err(e), _)) => fatal = Some(e),
                None => {}
            }
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..RX_BATCH {
                if fatal.is_some() {
                    break;
                }
                match dev.poll_recv(&mut cx, &mut buf) {
                    Poll::Ready(Ok(n)) => input(core, &buf[..n], dev.rx_meta()),
                    Poll::Ready(Err(e)) => fatal = Some(e),
                    Poll::Pending => break,
                }
            }
            core.advance(now);
            // Where packets leave: this shard's queue.
            let mut stats = core.stats;
            core.output(now, &mut |p, meta| {
                send_or_keep(&mut dev, &mut backlog, &mut stats, p, meta)
            });
            if dev.flush().is_err() {
                stats.tx_errors += 1;
            }
            core.stats = stats;
            if let Some(e) = fatal {
                core.error = Some((e.kind(), e.to_string()));
                core.host.wake_all();
                return;
            }
            core.host.wake_ready();
            let next = core.next_deadline().map(|t| shared.deadline(t));
            if orphaned {
                // Look again soon whether the last connections have closed.
                let soon = tokio::time::Instant::now() + Duration::from_millis(100);
                Some(next.map_or(soon, |d| d.min(soon)))
            } else {
                next
            }
        };
        let io = poll_fn(|cx| {
            if !backlog.is_empty() {
                let (mut sent, mut errors) = (0, 0);
                while let Some((p, meta)) = backlog.front() {
                    match dev.poll_send_with(cx, p, *meta) {
                        Poll::Ready(r) => {
                            if r.is_ok() {
                                sent += 1;
                            } else {
                                errors += 1;
                            }
                            backlog.pop_front();
                        }
                        Poll::Pending => break,
                    }
                }
                if sent > 0 && dev.flush().is_err() {
                    errors += 1;
                }
                if sent + errors > 0 {
                    return Poll::Ready(DevEvent::Drained { sent, errors });
                }
            }
            dev.poll_recv(cx, &mut buf)
                .map(|r| DevEvent::Received(r, dev.rx_meta()))
        });
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            Some(p) = steered(&mut steer) => from_shards.push(p),
            ev = io => match ev {
                DevEvent::Received(r, meta) => held = Some((r, meta)),
                DevEvent::Drained { sent, errors } => {
                    drained.0 += sent;
                    drained.1 += errors;
                }
            },
            _ = sleep_until(deadline) => {}
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A simulated network of [`Stack`]s: [`crate::sim::Network`] driven by one task under
/// tokio's clock, each host a stack with the same sockets as over a real device.
///
/// Run it on a runtime with paused time (`#[tokio::test(start_paused = true)]`) and it is
/// deterministic and as fast as the CPU: virtual time jumps to the next event whenever every
/// task waits. The driver steps the network to tokio's `now`, wakes the tasks whose sockets
/// became ready, and sleeps until the network's next event; a socket command first brings the
/// network up to `now`, so it sees every event due before it.
#[derive(Clone)]
pub struct SimNet {
    group: Arc<Group>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet").field("now", &self.now()).finish()
    }
}

impl SimNet {
    /// An empty network whose randomness derives from `seed`, its driver spawned on the
    /// current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn new(seed: u64) -> SimNet {
        let handle = tokio::runtime::Handle::current();
        let notify = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            core: Mutex::new(Core::Sim(Box::new(SimCore {
                net: Network::new(seed),
            }))),
            notify: notify.clone(),
            epoch: tokio::time::Instant::now(),
        });
        let group = Group::new(vec![shared.clone()]);
        handle.spawn(sim_driver(shared, Arc::downgrade(&group), notify));
        SimNet { group }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.group.shards[0]
    }

    fn with_net<R>(&self, f: impl FnOnce(&mut Network<Host>) -> R) -> R {
        let shared = self.shared();
        let mut core = shared.lock();
        let now = shared.now();
        core.catch_up(now);
        let Core::Sim(s) = &mut *core else {
            unreachable!("a SimNet always holds a simulated network")
        };
        let r = f(&mut s.net);
        drop(core);
        shared.notify.notify_one();
        r
    }

    /// Adds a host owning `addrs`, its TCP configured by `config`; its ISN key derives from
    /// the network's seed and the host's index.
    ///
    /// # Panics
    /// If another host already owns one of the addresses (a mistake in the topology).
    pub fn add_host(&self, name: &str, addrs: &[IpAddr], config: Config) -> Stack {
        let id = self.with_net(|net| {
            let i = net.host_ids().count() as u64;
            let a = mix64(net.seed() ^ mix64(i.wrapping_add(0x5eed)));
            let mut secret = [0u8; 16];
            secret[..8].copy_from_slice(&a.to_le_bytes());
            secret[8..].copy_from_slice(&mix64(a).to_le_bytes());
            let host = Host::new(Interface::new(config, addrs, secret));
            net.add_host(name, addrs, host)
        });
        Stack {
            group: self.group.clone(),
            shard: 0,
            pinned: false,
            host: id.0,
        }
    }

    /// Links two hosts point to point (see [`Network::link`]).
    ///
    /// # Panics
    /// If a stack is not a host of this network, or `a` and `b` are the same host.
    pub fn link(&self, a: &Stack, b: &Stack, a_to_b: PathConfig, b_to_a: PathConfig) {
        let (a, b) = (a.same_net(self), b.same_net(self));
        self.with_net(|net| net.link(a, b, a_to_b, b_to_a));
    }

    /// Sets the path `from → to` alone (see [`Network::set_path`]).
    ///
    /// # Panics
    /// As [`link`](Self::link).
    pub fn set_path(&self, from: &Stack, to: &Stack, config: PathConfig) {
        let (from, to) = (from.same_net(self), to.same_net(self));
        self.with_net(|net| net.set_path(from, to, config));
    }

    /// The counters of the path `from → to`, if linked.
    pub fn path_stats(&self, from: &Stack, to: &Stack) -> Option<PathStats> {
        let (from, to) = (from.same_net(self), to.same_net(self));
        self.with_net(|net| net.path_stats(from, to).copied())
    }

    /// Network-wide counters.
    pub fn stats(&self) -> NetStats {
        self.with_net(|net| net.stats())
    }

    /// The network's virtual time (tokio's clock since the network was made).
    pub fn now(&self) -> Instant {
        self.shared().now()
    }

    /// Attaches a tap to a host's interface (see [`Network::tap`]).
    pub fn tap(&self, host: &Stack, tap: impl Tap + Send + 'static) {
        let id = host.same_net(self);
        self.with_net(|net| net.tap(id, Box::new(tap)));
    }
}

/// The driver of a [`SimNet`].
async fn sim_driver(shared: Arc<Shared>, group: Weak<Group>, notify: Arc<Notify>) {
    loop {
        let deadline = {
            if group.strong_count() == 0 {
                // Nothing can use the network any more.
                return;
            }
            let mut guard = shared.lock();
            let now = shared.now();
            let Core::Sim(s) = &mut *guard else {
                return;
            };
            s.net.run_until(now);
            for id in s.net.host_ids().collect::<Vec<_>>() {
                s.net.host_mut(id).wake_ready();
            }
            s.net.next_event().map(|t| shared.deadline(t))
        };
        tokio::select! {
            biased;
            _ = notify.notified() => {}
            _ = sleep_until(deadline) => {}
        }
    }
}
