//! TCP Fast Open (RFC 7413), segment by segment: the server's cookies and its children that
//! take data from the SYN, the client's cookie requests, cache, SYNs with data and fallbacks.
//! Each test drives endpoints by hand and checks the exact segments they send.

use std::net::{IpAddr, SocketAddr};

use synack_tcp::{
    Config, ConnId, ConnectOptions, Endpoint, FastOpenConfig, FastOpenKey, Instant, ListenerId,
    State,
};
use synack_wire::{FastOpen, FastOpenCookie, TcpFlags, TcpOptions, TcpRepr};

const S: TcpFlags = TcpFlags::SYN;
const A: TcpFlags = TcpFlags::ACK;
const P: TcpFlags = TcpFlags::PSH;

fn client() -> SocketAddr {
    "198.18.0.1:40000".parse().unwrap()
}

fn server() -> SocketAddr {
    "198.18.0.2:80".parse().unwrap()
}

fn key() -> FastOpenKey {
    FastOpenKey::parse_linux("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4").unwrap()
}

/// The cookie the server's key gives the client's address.
fn good_cookie() -> FastOpenCookie {
    key().cookie(client().ip(), server().ip())
}

/// A Linux-like configuration without timestamps, SACK or window scaling (shorter segments to
/// read), immediate ACKs, Fast Open on both sides with the suite's key.
fn config() -> Config {
    let mut fast_open = FastOpenConfig::from_linux_sysctl(0x3);
    fast_open.key = Some(key());
    Config {
        timestamps: false,
        sack: false,
        window_scaling: false,
        delayed_ack: None,
        fast_open,
        ..Config::default()
    }
}

/// A segment as the tests write and read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seg {
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    data: Vec<u8>,
    options: TcpOptions,
}

impl Seg {
    fn new(flags: TcpFlags, seq: u32, ack: u32) -> Seg {
        Seg {
            flags,
            seq,
            ack,
            data: Vec::new(),
            options: TcpOptions::default(),
        }
    }
    fn data(mut self, d: &[u8]) -> Seg {
        self.data = d.to_vec();
        self
    }
    fn mss(mut self, mss: u16) -> Seg {
        self.options.mss = Some(mss);
        self
    }
    fn fo(mut self, cookie: FastOpenCookie, experimental: bool) -> Seg {
        self.options.fast_open = Some(FastOpen {
            cookie,
            experimental,
        });
        self
    }
    fn key(&self) -> (TcpFlags, u32, u32, usize) {
        (self.flags, self.seq, self.ack, self.data.len())
    }
}

/// Feed `s`, sent from `from` to `to`, to `ep`.
fn feed(ep: &mut Endpoint, now: Instant, from: SocketAddr, to: SocketAddr, s: &Seg) {
    let repr = TcpRepr {
        src_port: from.port(),
        dst_port: to.port(),
        seq: s.seq,
        ack: s.ack,
        flags: s.flags,
        window: 65535,
        urgent: 0,
        options: s.options,
        payload: &s.data,
    };
    ep.handle_segment(now, from.ip(), to.ip(), &repr);
}

/// Everything `ep` sends now, parsed back (checksums verified).
fn drain(ep: &mut Endpoint, now: Instant) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1600];
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        let r = TcpRepr::parse(&buf[..t.len], Some((t.src, t.dst))).unwrap();
        out.push(Seg {
            flags: r.flags,
            seq: r.seq,
            ack: r.ack,
            data: r.payload.to_vec(),
            options: r.options,
        });
    }
    out
}

fn server_ep(qlen: usize) -> (Endpoint, ListenerId) {
    let mut ep = Endpoint::new(config(), [7; 16]);
    let l = ep.listen(server(), 16).unwrap();
    ep.set_fast_open(l, qlen);
    (ep, l)
}

const PEER_ISN: u32 = 5000;
const T0: Instant = Instant::ZERO;

fn syn() -> Seg {
    Seg::new(S, PEER_ISN, 0).mss(1460)
}

// -------------------------------------------------------------------------------------------
// The server.

/// RFC 7413 §4.1.2: a cookie request gets a cookie, in the option kind it came in, and an
/// ordinary handshake: the SYN's data is not taken (the SYN-ACK acknowledges the SYN alone)
/// and nothing is accepted before the third segment.
#[test]
fn server_answers_a_cookie_request_in_the_kind_asked() {
    for experimental in [false, true] {
        let (mut ep, l) = server_ep(4);
        let s = syn()
            .data(b"0123456789")
            .fo(FastOpenCookie::REQUEST, experimental);
        feed(&mut ep, T0, client(), server(), &s);
        let out = drain(&mut ep, T0);
        assert_eq!(out.len(), 1);
        let synack = &out[0];
        assert_eq!((synack.flags, synack.ack), (S | A, PEER_ISN + 1));
        assert_eq!(
            synack.options.fast_open,
            Some(FastOpen {
                cookie: good_cookie(),
                experimental
            })
        );
        assert_eq!(ep.pending(l), 0, "a plain handshake: nothing to accept yet");
        assert_eq!(ep.stats().fast_open_cookies_sent, 1);
        feed(
            &mut ep,
            T0,
            client(),
            server(),
            &Seg::new(A, PEER_ISN + 1, synack.seq + 1),
        );
        assert_eq!(ep.pending(l), 1);
        let id = ep.accept(l).unwrap();
        assert!(!ep.conn(id).unwrap().syn_data_acked());
    }
}

/// RFC 7413 §4.2.2: a valid cookie and data. The SYN-ACK acknowledges the data and carries no
/// cookie; the connection is in the accept queue at once, in SYN-RECEIVED, its data readable
/// and its writes sent before the handshake's ACK.
#[test]
fn server_takes_data_with_a_valid_cookie_and_answers_before_the_ack() {
    let (mut ep, l) = server_ep(4);
    let s = syn()
        .data(b"GET / HTTP/1.0\r\n\r\n")
        .fo(good_cookie(), false);
    feed(&mut ep, T0, client(), server(), &s);
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    let synack = &out[0];
    let iss = synack.seq;
    assert_eq!(synack.key(), (S | A, iss, PEER_ISN + 1 + 18, 0));
    assert_eq!(synack.options.fast_open, None);
    assert_eq!(ep.stats().fast_open_accepted, 1);

    assert_eq!(ep.pending(l), 1, "accepted before the handshake completes");
    let id = ep.accept(l).unwrap();
    let c = ep.conn(id).unwrap();
    assert_eq!(c.state(), State::SynReceived);
    assert!(c.is_fast_open_child() && c.syn_data_acked());
    let mut buf = [0u8; 64];
    let n = ep.with_conn(T0, id, |c| c.recv(&mut buf)).unwrap().unwrap();
    assert_eq!(&buf[..n], b"GET / HTTP/1.0\r\n\r\n");

    // The reply leaves now, after the SYN-ACK in sequence space.
    assert_eq!(ep.with_conn(T0, id, |c| c.send(b"200 OK")), Some(Ok(6)));
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key(), (P | A, iss + 1, PEER_ISN + 19, 6));
    assert_eq!(out[0].data, b"200 OK");

    // The handshake's ACK (and the reply's) completes it.
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &Seg::new(A, PEER_ISN + 19, iss + 7),
    );
    assert_eq!(ep.conn(id).unwrap().state(), State::Established);
    assert!(drain(&mut ep, T0).is_empty());
}

/// RFC 7413 §4.1.2: a wrong cookie is a cookie request: the data is ignored (to be sent again
/// after the handshake) and the SYN-ACK carries a fresh cookie.
#[test]
fn server_ignores_data_with_a_wrong_cookie_and_sends_a_fresh_one() {
    let (mut ep, l) = server_ep(4);
    let wrong = FastOpenCookie::new(&[0xaa; 8]).unwrap();
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &syn().data(b"0123456789").fo(wrong, true),
    );
    let out = drain(&mut ep, T0);
    assert_eq!((out[0].flags, out[0].ack), (S | A, PEER_ISN + 1));
    assert_eq!(
        out[0].options.fast_open,
        Some(FastOpen {
            cookie: good_cookie(),
            experimental: true
        })
    );
    assert_eq!(ep.pending(l), 0);
    assert_eq!(ep.stats().fast_open_accepted, 0);
}

/// Linux's second key: a cookie made under the backup key still takes the data, and the
/// SYN-ACK gives the cookie of the current key.
#[test]
fn server_accepts_the_backup_key_and_gives_the_current_cookie() {
    let (mut ep, l) = server_ep(4);
    let old = FastOpenKey::from_bytes([9; 16]);
    ep.set_fast_open_key(l, key(), Some(old));
    let old_cookie = old.cookie(client().ip(), server().ip());
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &syn().data(b"hi").fo(old_cookie, false),
    );
    let out = drain(&mut ep, T0);
    assert_eq!(out[0].ack, PEER_ISN + 3, "the data is taken");
    assert_eq!(out[0].options.fast_open.unwrap().cookie, good_cookie());
    assert_eq!(ep.pending(l), 1);
}

/// RFC 7413 §5.1: at most `qlen` Fast Open children wait in SYN-RECEIVED; beyond, a SYN with
/// a valid cookie and data gets a plain handshake, without cookie or data taken.
#[test]
fn server_queue_limit_falls_back_to_a_plain_handshake() {
    let (mut ep, l) = server_ep(1);
    let other: SocketAddr = "198.18.0.1:40001".parse().unwrap();
    let s = syn().data(b"first").fo(good_cookie(), false);
    feed(&mut ep, T0, client(), server(), &s);
    feed(&mut ep, T0, other, server(), &s);
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].ack, PEER_ISN + 6, "the first child takes its data");
    assert_eq!(out[1].ack, PEER_ISN + 1, "the second: a plain SYN-ACK");
    assert_eq!(out[1].options.fast_open, None);
    assert_eq!(ep.stats().fast_open_queue_full, 1);
    assert_eq!(ep.pending(l), 1);
    // Once the first child's handshake completes, the queue has room again.
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &Seg::new(A, PEER_ISN + 6, out[0].seq + 1),
    );
    let third: SocketAddr = "198.18.0.1:40002".parse().unwrap();
    feed(&mut ep, T0, third, server(), &s);
    let out = drain(&mut ep, T0);
    assert_eq!(out.last().unwrap().ack, PEER_ISN + 6);
}

/// A listener without Fast Open (queue length 0) and a server side that is off both answer
/// a Fast Open SYN as a plain one: no cookie, no data.
#[test]
fn server_off_or_listener_off_means_plain_handshakes() {
    let (mut ep, _l) = server_ep(0);
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &syn().data(b"x").fo(good_cookie(), false),
    );
    let out = drain(&mut ep, T0);
    assert_eq!((out[0].ack, out[0].options.fast_open), (PEER_ISN + 1, None));

    let (mut ep, _l) = server_ep(4);
    ep.config_mut().fast_open.server = false;
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &syn().fo(FastOpenCookie::REQUEST, false),
    );
    let out = drain(&mut ep, T0);
    assert_eq!((out[0].ack, out[0].options.fast_open), (PEER_ISN + 1, None));
}

/// Linux's 0x200: data in a SYN is taken without any cookie, and the SYN-ACK offers none.
#[test]
fn server_without_cookies_required_takes_any_syn_data() {
    let (mut ep, l) = server_ep(4);
    ep.config_mut().fast_open.server_no_cookie = true;
    feed(&mut ep, T0, client(), server(), &syn().data(b"abc"));
    let out = drain(&mut ep, T0);
    assert_eq!((out[0].ack, out[0].options.fast_open), (PEER_ISN + 4, None));
    assert_eq!(ep.pending(l), 1);
}

/// Linux's 0x400: every listener takes Fast Open, its queue as deep as its backlog.
#[test]
fn server_all_listeners() {
    let mut ep = Endpoint::new(config(), [7; 16]);
    ep.config_mut().fast_open.server_all_listeners = true;
    let l = ep.listen(server(), 3).unwrap();
    assert_eq!(ep.fast_open_qlen(l), 3);
}

/// A Fast Open child reset before it is accepted stays in the accept queue with its data
/// readable, then reports the reset (as Linux's); its close with unread data resets.
#[test]
fn server_child_reset_before_accept_keeps_its_data() {
    let (mut ep, l) = server_ep(4);
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &syn().data(b"0123456789").fo(good_cookie(), false),
    );
    let _ = drain(&mut ep, T0);
    feed(
        &mut ep,
        T0,
        client(),
        server(),
        &Seg::new(TcpFlags::RST | A, PEER_ISN + 11, 0),
    );
    assert_eq!(ep.pending(l), 1);
    let id = ep.accept(l).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(ep.with_conn(T0, id, |c| c.recv(&mut buf)), Some(Ok(10)));
    assert!(ep.with_conn(T0, id, |c| c.recv(&mut buf)).unwrap().is_err());
}

// -------------------------------------------------------------------------------------------
// The client.

fn client_ep() -> Endpoint {
    Endpoint::new(config(), [3; 16])
}

fn fo_connect(ep: &mut Endpoint, port: u16, defer_syn: bool) -> ConnId {
    ep.connect_with(
        T0,
        client().ip(),
        Some(port),
        server(),
        ConnectOptions {
            fast_open: true,
            defer_syn,
        },
    )
    .unwrap()
}

fn remote_ip() -> IpAddr {
    server().ip()
}

/// RFC 7413 §4.1.3: without a cookie the SYN asks for one and carries no data, whatever is
/// queued; the SYN-ACK's cookie and MSS are cached; the queued data leaves with the
/// handshake's ACK (no pure ACK first).
#[test]
fn client_asks_for_a_cookie_and_caches_it() {
    let mut ep = client_ep();
    let id = fo_connect(&mut ep, 40000, false);
    assert_eq!(ep.with_conn(T0, id, |c| c.send(b"hello")), Some(Ok(5)));
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    let syn = &out[0];
    let iss = syn.seq;
    assert_eq!(syn.key(), (S, iss, 0, 0));
    assert_eq!(syn.options.fast_open, Some(FastOpen::request(false)));

    let cookie = FastOpenCookie::new(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let synack = Seg::new(S | A, 7000, iss + 1).mss(1000).fo(cookie, false);
    feed(&mut ep, T0, server(), client(), &synack);
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1, "the data carries the ACK");
    assert_eq!(out[0].key(), (P | A, iss + 1, 7001, 5));
    assert_eq!(
        ep.fast_open_cached(remote_ip()),
        Some((
            Some(FastOpen {
                cookie,
                experimental: false
            }),
            Some(1000)
        ))
    );
}

/// RFC 7413 §4.2.1: with a cookie cached, the SYN carries it and as much queued data as fits
/// the server's cached MSS less 40 bytes of option room (as Linux); a SYN-ACK that
/// acknowledges it all marks the data as taken, and the rest follows.
#[test]
fn client_sends_data_in_the_syn_with_a_cached_cookie() {
    let mut ep = client_ep();
    let cookie = FastOpenCookie::new(&[0xab, 0xcd, 0x12, 0x34]).unwrap();
    let fo = FastOpen {
        cookie,
        experimental: false,
    };
    ep.set_fast_open_cached(remote_ip(), Some(fo), Some(940));
    let id = fo_connect(&mut ep, 40000, false);
    let data: Vec<u8> = (0..1900u32).map(|i| i as u8).collect();
    assert_eq!(ep.conn(id).unwrap().fast_open_syn_room(), Some(900));
    assert_eq!(ep.with_conn(T0, id, |c| c.send(&data)), Some(Ok(1900)));
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    let iss = out[0].seq;
    assert_eq!(out[0].key(), (S, iss, 0, 900));
    assert_eq!(out[0].data, &data[..900]);
    assert_eq!(out[0].options.fast_open, Some(fo));

    let synack = Seg::new(S | A, 7000, iss + 901).mss(1460);
    feed(&mut ep, T0, server(), client(), &synack);
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key(), (P | A, iss + 901, 7001, 1000));
    assert_eq!(out[0].data, &data[900..]);
    assert!(ep.conn(id).unwrap().syn_data_acked());
}

/// RFC 7413 §4.2.2: a SYN-ACK that acknowledges only the SYN (a server that ignored the data)
/// makes the client send the data again at once, as the SYN carried it, with the ACK.
#[test]
fn client_resends_what_the_synack_did_not_take() {
    let mut ep = client_ep();
    let fo = FastOpen {
        cookie: FastOpenCookie::new(&[7; 8]).unwrap(),
        experimental: false,
    };
    ep.set_fast_open_cached(remote_ip(), Some(fo), None);
    let id = fo_connect(&mut ep, 40000, false);
    let data = vec![5u8; 700];
    ep.with_conn(T0, id, |c| c.send(&data));
    let out = drain(&mut ep, T0);
    let iss = out[0].seq;
    assert_eq!(out[0].key(), (S, iss, 0, 700));
    feed(
        &mut ep,
        T0,
        server(),
        client(),
        &Seg::new(S | A, 7000, iss + 1).mss(1460),
    );
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].key(), (P | A, iss + 1, 7001, 700));
    assert!(!ep.conn(id).unwrap().syn_data_acked());
}

/// A SYN retransmission is plain: no option, no data (either may be what the path drops).
/// The SYN-ACK that answers it takes no data: it goes again after the handshake.
#[test]
fn client_syn_retransmission_drops_option_and_data() {
    let mut ep = client_ep();
    let fo = FastOpen {
        cookie: FastOpenCookie::new(&[7; 8]).unwrap(),
        experimental: false,
    };
    ep.set_fast_open_cached(remote_ip(), Some(fo), None);
    let id = fo_connect(&mut ep, 40000, false);
    ep.with_conn(T0, id, |c| c.send(&[1u8; 100]));
    let first = drain(&mut ep, T0);
    let iss = first[0].seq;
    assert_eq!(first[0].data.len(), 100);
    let rto = ep.poll_timeout().unwrap();
    ep.handle_timeout(rto);
    let again = drain(&mut ep, rto);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].key(), (S, iss, 0, 0));
    assert_eq!(again[0].options.fast_open, None);
    feed(
        &mut ep,
        rto,
        server(),
        client(),
        &Seg::new(S | A, 7000, iss + 1).mss(1460),
    );
    let out = drain(&mut ep, rto);
    assert_eq!(out[0].key(), (P | A, iss + 1, 7001, 100));
}

/// Linux's TCP_FASTOPEN_CONNECT: with a cookie cached, nothing is sent until the first write,
/// which the SYN then carries. Without one, the SYN (a cookie request) goes at once.
#[test]
fn client_deferred_syn_waits_for_the_first_write() {
    let mut ep = client_ep();
    let id = fo_connect(&mut ep, 40000, true);
    assert!(
        !ep.conn(id).unwrap().is_syn_deferred(),
        "no cookie: no wait"
    );
    assert_eq!(drain(&mut ep, T0).len(), 1);

    let fo = FastOpen {
        cookie: FastOpenCookie::new(&[7; 8]).unwrap(),
        experimental: false,
    };
    ep.set_fast_open_cached(remote_ip(), Some(fo), None);
    let id = fo_connect(&mut ep, 40001, true);
    assert!(ep.conn(id).unwrap().is_syn_deferred());
    assert!(drain(&mut ep, T0).is_empty());
    assert_eq!(
        ep.conn(id).unwrap().poll_timeout(),
        None,
        "no timer while nothing was sent"
    );
    ep.with_conn(T0, id, |c| c.send(b"request"));
    let out = drain(&mut ep, T0);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].flags, out[0].data.as_slice()), (S, &b"request"[..]));
}

/// Linux's fallback when a server answers a cookie request without a cookie: the next
/// request goes in the experimental kind 254; if that fails too, kind 34 for good.
#[test]
fn client_falls_back_to_the_experimental_option_once() {
    let mut ep = client_ep();
    let mut kinds = Vec::new();
    for port in 40000..40004 {
        let id = fo_connect(&mut ep, port, false);
        let out = drain(&mut ep, T0);
        kinds.push(out[0].options.fast_open.map(|f| f.experimental));
        let iss = out[0].seq;
        feed(
            &mut ep,
            T0,
            server(),
            SocketAddr::new(client().ip(), port),
            &Seg::new(S | A, 7000, iss + 1).mss(1460),
        );
        let _ = drain(&mut ep, T0);
        ep.abort(id);
        let _ = drain(&mut ep, T0);
    }
    assert_eq!(kinds, [Some(false), Some(true), Some(false), Some(false)]);
}

/// Linux's 0x4: data in the SYN without any cookie; a cookie the server volunteers is not
/// cached (RFC 7413 §4.1.3: only a requested one is).
#[test]
fn client_without_cookies_sends_data_and_no_option() {
    let mut ep = client_ep();
    ep.config_mut().fast_open.client_no_cookie = true;
    let id = fo_connect(&mut ep, 40000, false);
    ep.with_conn(T0, id, |c| c.send(b"data"));
    let out = drain(&mut ep, T0);
    assert_eq!(out[0].key().3, 4);
    assert_eq!(out[0].options.fast_open, None);
    let iss = out[0].seq;
    let volunteered = FastOpenCookie::new(&[1; 4]).unwrap();
    feed(
        &mut ep,
        T0,
        server(),
        client(),
        &Seg::new(S | A, 7000, iss + 5)
            .mss(940)
            .fo(volunteered, false),
    );
    assert_eq!(
        ep.fast_open_cached(remote_ip()),
        Some((None, Some(940))),
        "the MSS is kept, the cookie not"
    );
}

/// RFC 9293 §3.10.7.3: data in a SYN-ACK (a Fast Open server may send some) is taken.
#[test]
fn client_takes_data_in_the_synack() {
    let mut ep = client_ep();
    let id = fo_connect(&mut ep, 40000, false);
    let out = drain(&mut ep, T0);
    let iss = out[0].seq;
    feed(
        &mut ep,
        T0,
        server(),
        client(),
        &Seg::new(S | A, 7000, iss + 1).mss(1460).data(b"early"),
    );
    let out = drain(&mut ep, T0);
    assert_eq!(out[0].key(), (A, iss + 1, 7006, 0));
    let mut buf = [0u8; 16];
    assert_eq!(ep.with_conn(T0, id, |c| c.recv(&mut buf)), Some(Ok(5)));
    assert_eq!(&buf[..5], b"early");
}

/// Client and server endpoints back to back: the second connection's request rides its SYN
/// and the server's reply comes back before the handshake's ACK — a repeat visit costs no
/// extra round trip.
#[test]
fn repeat_visit_costs_no_round_trip() {
    let mut c = client_ep();
    let (mut s, l) = server_ep(8);
    let mut buf = vec![0u8; 1600];
    let mut pump = |c: &mut Endpoint, s: &mut Endpoint| {
        let mut n = 0;
        loop {
            let mut moved = false;
            while let Some(t) = c.poll_transmit(T0, &mut buf) {
                let r = TcpRepr::parse(&buf[..t.len], None).unwrap();
                s.handle_segment(T0, t.src, t.dst, &r);
                moved = true;
                n += 1;
            }
            while let Some(t) = s.poll_transmit(T0, &mut buf) {
                let r = TcpRepr::parse(&buf[..t.len], None).unwrap();
                c.handle_segment(T0, t.src, t.dst, &r);
                moved = true;
                n += 1;
            }
            if !moved {
                return n;
            }
        }
    };
    // First visit: a cookie request, a plain handshake.
    let a = fo_connect(&mut c, 40000, false);
    pump(&mut c, &mut s);
    assert!(c.fast_open_cached(remote_ip()).unwrap().0.is_some());
    c.abort(a);
    pump(&mut c, &mut s);
    // Second: the SYN carries the request; the server reads it from the SYN.
    let b = fo_connect(&mut c, 40001, true);
    c.with_conn(T0, b, |c| c.send(b"GET /"));
    let out = drain(&mut c, T0);
    assert_eq!((out[0].flags, out[0].data.as_slice()), (S, &b"GET /"[..]));
    feed(
        &mut s,
        T0,
        SocketAddr::new(client().ip(), 40001),
        server(),
        &out[0],
    );
    let child = s.accept(l).unwrap();
    let mut req = [0u8; 16];
    assert_eq!(s.with_conn(T0, child, |c| c.recv(&mut req)), Some(Ok(5)));
    s.with_conn(T0, child, |c| c.send(b"200"));
    let out = drain(&mut s, T0);
    assert_eq!(out.len(), 2, "the SYN-ACK and the reply, at once");
    assert_eq!(out[1].data, b"200");
}
