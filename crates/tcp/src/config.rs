//! Settings of a TCP endpoint and its connections. Defaults follow a modern Linux where the RFCs
//! allow it, so that scripts and peers written against Linux see what they expect.

use crate::cc::Algorithm;
pub use crate::conn::mtuprobe::{MtuProbeMode, MtuProbing};
use crate::fastopen::FastOpenConfig;
use crate::time::Duration;

/// Keepalive settings, RFC 9293 §3.8.4 (names as Linux's `TCP_KEEPIDLE`, `TCP_KEEPINTVL`,
/// `TCP_KEEPCNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (RFC 9293: no less than two hours by default).
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes after which the peer is declared dead.
    pub count: u32,
}

impl Default for Keepalive {
    fn default() -> Keepalive {
        Keepalive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            count: 9,
        }
    }
}

/// Explicit Congestion Notification (RFC 3168), in the three modes of Linux's
/// `net.ipv4.tcp_ecn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ecn {
    /// Never: SYNs asking for ECN are answered without it (`tcp_ecn = 0`).
    Off,
    /// When the peer asks (its SYN has ECE and CWR), not on our own opens (`tcp_ecn = 2`,
    /// Linux's default).
    #[default]
    Passive,
    /// Ask on our opens too (`tcp_ecn = 1`).
    On,
}

impl Ecn {
    /// The mode of a `net.ipv4.tcp_ecn` value (3 and above, Accurate ECN, as `On`).
    pub fn from_linux_sysctl(v: u32) -> Ecn {
        match v {
            0 => Ecn::Off,
            2 => Ecn::Passive,
            _ => Ecn::On,
        }
    }
}

/// Endpoint-wide settings; each connection copies them when it is made and some can be changed
/// per connection afterwards (`nodelay`, keepalive, user timeout).
#[derive(Debug, Clone)]
pub struct Config {
    /// The interface MTU; the MSS we announce is this minus the IP and TCP headers.
    pub mtu: usize,
    /// The MSS to announce instead of the one `mtu` gives (Linux's route metric `advmss`),
    /// never above it.
    pub advmss: Option<usize>,
    /// The path MTU known before any probing (Linux's route metric `mtu`): segments are sized
    /// for it rather than for `mtu`, and a connection learns a new one through
    /// [`Connection::set_path_mtu`](crate::Connection::set_path_mtu). `None`: `mtu`.
    pub path_mtu: Option<usize>,
    /// Packetization Layer Path MTU Discovery (RFC 4821), as Linux's `tcp_mtu_probing` (off by
    /// default, as Linux's).
    pub mtu_probing: MtuProbing,
    /// The device segments for us (TSO/GSO on, Linux's default and a TUN path's): write-queue
    /// buffers of two segments, each sent pushed. Off (`ethtool -K dev gso off tso off`),
    /// Linux still builds large buffers but sends each burst of at most half the congestion
    /// window as one software-segmented packet whose last segment carries PSH (see
    /// `conn::mtuprobe`).
    pub segmentation_offload: bool,
    /// Receive buffer per connection, in bytes: the most we ever advertise.
    pub recv_buffer: usize,
    /// Send buffer per connection, in bytes.
    pub send_buffer: usize,
    /// Offer window scaling (RFC 7323 §2).
    pub window_scaling: bool,
    /// The window-scale shift to offer; `None`: the smallest that lets the whole receive
    /// buffer be advertised. (Linux offers `ilog2(tcp_rmem[2]) - 15`, from the largest buffer
    /// the connection could grow to.)
    pub window_scale: Option<u8>,
    /// Offer timestamps (RFC 7323 §3).
    pub timestamps: bool,
    /// Offer SACK (RFC 2018).
    pub sack: bool,
    /// Initial congestion window in segments (RFC 6928: 10).
    pub initial_window: usize,
    pub congestion: Algorithm,
    /// RTO before any measurement (RFC 6298 §2.1: 1 s).
    pub initial_rto: Duration,
    /// Floor of the RTO (RFC 6298 §2.4 says 1 s; Linux uses 200 ms).
    pub min_rto: Duration,
    /// Ceiling of the RTO (RFC 6298 §2.5: at least 60 s; Linux uses 120 s).
    pub max_rto: Duration,
    /// The floor in the variance term, as Linux (`__tcp_set_rto`): RTO = SRTT +
    /// max(4·RTTVAR, `min_rto`) instead of RFC 6298's max(SRTT + 4·RTTVAR, `min_rto`); on a
    /// short path the timer waits the floor plus the round trip.
    pub linux_rto: bool,
    /// SYN retransmissions before an active open fails (Linux `tcp_syn_retries`: 6).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a passive open is given up (Linux's
    /// `tcp_synack_retries`, 5 by default); `None`: as many as `syn_retries`.
    pub synack_retries: Option<u32>,
    /// An overall limit on an active open, if any.
    pub connect_timeout: Option<Duration>,
    /// Maximum segment lifetime; TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2; Linux: 60 s in all).
    pub msl: Duration,
    /// Delayed-ACK timeout (RFC 9293 §3.8.6.3: under 0.5 s; Linux: 40 ms); `None` acks at once.
    pub delayed_ack: Option<Duration>,
    /// Linux's quick-ACK mode: the first data of a connection (and data after a silence longer
    /// than the RTO) is acknowledged at once, segment by segment, up to 16 times, unless the
    /// connection is interactive (we answered within the delayed-ACK time: "ping-pong"), so
    /// that a sender in slow start is not held back by delayed ACKs (RFC 9293 §3.8.6.3 allows
    /// acknowledging sooner). `false`: every ACK may wait the delayed-ACK time.
    pub quick_ack: bool,
    /// Linux's `TCP_NOTSENT_LOWAT` for new connections (`net.ipv4.tcp_notsent_lowat`):
    /// writes queue new buffers only while fewer bytes than this wait unsent. `None`: no
    /// limit.
    pub notsent_lowat: Option<usize>,
    /// Nagle's algorithm (RFC 9293 §3.7.4); `false` is `TCP_NODELAY`.
    pub nagle: bool,
    /// RFC 5482 user timeout: how long sent data may stay unacknowledged before the connection
    /// fails. `None`: fail after `max_retransmissions` timeouts instead.
    pub user_timeout: Option<Duration>,
    /// Data retransmissions by timeout before the connection fails (Linux `tcp_retries2`: 15).
    pub max_retransmissions: u32,
    pub keepalive: Option<Keepalive>,
    /// How long an orphaned connection may sit in FIN-WAIT-2 (Linux `tcp_fin_timeout`: 60 s).
    pub fin_wait2_timeout: Duration,
    /// Most connections in SYN-RECEIVED per listener (the SYN backlog).
    pub syn_backlog: usize,
    /// Most connections the endpoint holds at once, in any state (TIME-WAIT included);
    /// `None`: no limit. At the limit `connect` fails with
    /// [`ConnectError::TooManyConnections`](crate::ConnectError::TooManyConnections) (the
    /// `EMFILE` of a socket API) and SYNs are dropped and counted.
    pub max_connections: Option<usize>,
    /// Most bytes of buffer storage (send and receive rings) the endpoint's connections may
    /// hold; `None`: no limit. At the limit `connect` fails with
    /// [`ConnectError::NoBuffers`](crate::ConnectError::NoBuffers) (the `ENOBUFS` of a socket
    /// API), SYNs are dropped and counted, and no ring grows further (see
    /// `Connection::set_memory_pressure`). Rings grow with data actually held, so the limit
    /// bites only on data in flight and unread.
    pub max_buffer_bytes: Option<usize>,
    /// Wait a reordering window (a quarter of the smoothed RTT, at least 1 ms) after loss is
    /// first inferred from duplicate ACKs or SACKs before starting recovery, so that segments
    /// merely reordered by the path are never resent (RFC 8985 §6.2's reordering window,
    /// applied from the start as Linux's `TCP_RACK_NO_DUPTHRESH` does). `false` recovers on the
    /// third duplicate at once (RFC 5681, and Linux's default until it has seen reordering).
    pub reorder_window: bool,
    /// Pace data as Linux does under the `fq` qdisc or its internal pacing: each write-queue
    /// buffer after the first ten segments waits its length at twice the congestion window
    /// per smoothed RTT in slow start, 1.2 times after (see `conn::pacing`). Off: a window
    /// goes out as fast as the link takes it.
    pub pacing: bool,
    /// Answer SYNs with SYN cookies when a listener's SYN queue is full, keeping no state
    /// until the handshake completes (RFC 4987 §3.6; Linux `tcp_syncookies = 1`). Without,
    /// such SYNs are dropped.
    pub syn_cookies: bool,
    /// At most one challenge ACK (RFC 5961) or ACK to an unacceptable segment without data
    /// per this interval on one connection (Linux `tcp_invalid_ratelimit`: 500 ms).
    pub challenge_ack_interval: Duration,
    /// At most this many challenge ACKs per second from the whole endpoint (RFC 5961 §7;
    /// Linux `tcp_challenge_ack_limit`: 1000).
    pub challenge_ack_limit: u32,
    /// TCP Fast Open (RFC 7413): client and server switches, keys.
    pub fast_open: FastOpenConfig,
    /// Explicit Congestion Notification (RFC 3168).
    pub ecn: Ecn,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mtu: 1500,
            advmss: None,
            path_mtu: None,
            mtu_probing: MtuProbing::default(),
            segmentation_offload: true,
            recv_buffer: 1 << 20,
            send_buffer: 1 << 20,
            window_scaling: true,
            window_scale: None,
            timestamps: true,
            sack: true,
            initial_window: 10,
            congestion: Algorithm::Cubic,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            linux_rto: false,
            syn_retries: 6,
            synack_retries: None,
            connect_timeout: None,
            msl: Duration::from_secs(30),
            delayed_ack: Some(Duration::from_millis(40)),
            quick_ack: false,
            notsent_lowat: None,
            nagle: true,
            user_timeout: None,
            max_retransmissions: 15,
            keepalive: None,
            fin_wait2_timeout: Duration::from_secs(60),
            syn_backlog: 128,
            max_connections: None,
            max_buffer_bytes: None,
            reorder_window: true,
            pacing: false,
            syn_cookies: true,
            challenge_ack_interval: Duration::from_millis(500),
            challenge_ack_limit: 1000,
            fast_open: FastOpenConfig::default(),
            ecn: Ecn::default(),
        }
    }
}

impl Config {
    /// The MSS our SYN or SYN-ACK announces: `advmss` if set (bounded by `mtu`), else the
    /// `mtu` less the IP and TCP headers.
    pub fn announced_mss(&self, ipv6: bool) -> usize {
        let own = crate::conn::mss_for_mtu(self.mtu, ipv6);
        self.advmss
            .map_or(own, |a| a.clamp(crate::conn::MIN_SND_MSS, own))
    }
}
