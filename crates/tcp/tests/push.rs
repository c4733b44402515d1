//! The send path's Linux-compatible policies, segment by segment: where PSH goes (RFC 9293
//! §3.9.1 leaves it to the sender; Linux pushes each write's end and each two-segment
//! write-queue buffer a write fills; with a peer window under four segments, a filled buffer
//! every half window), records (`MSG_EOR`), `MSG_MORE` and `TCP_CORK`,
//! `TCP_NOTSENT_LOWAT`, and new data that waits for a window that fits it.

mod harness;

use harness::*;
use synack_tcp::{Config, SendFlags};
use synack_wire::TcpOptions;

fn mss(m: u16) -> TcpOptions {
    TcpOptions {
        mss: Some(m),
        ..TcpOptions::default()
    }
}

fn nodelay() -> Config {
    Config {
        nagle: false,
        ..plain()
    }
}

/// Relative sequence numbers, flags and lengths of what went out.
fn rel(out: &[Seg]) -> Vec<(u32, TcpFlagsView, usize)> {
    out.iter()
        .map(|s| {
            (
                s.seq - ISS - 1,
                TcpFlagsView(s.flags.contains(P)),
                s.data.len(),
            )
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
struct TcpFlagsView(bool);
const PSH: TcpFlagsView = TcpFlagsView(true);
const NO: TcpFlagsView = TcpFlagsView(false);

#[test]
fn psh_ends_each_write_and_each_two_segment_buffer_a_write_fills() {
    let mut c = established_with(&plain(), mss(1000));
    assert_eq!(c.send(&[1; 4500]), Ok(4500));
    let out = output(&mut c, t(20));
    assert_eq!(
        rel(&out),
        vec![
            (0, NO, 1000),
            (1000, PSH, 1000),
            (2000, NO, 1000),
            (3000, PSH, 1000),
            (4000, PSH, 500),
        ]
    );
    // A retransmission of a segment that ended a filled buffer carries no PSH (Linux cuts it
    // out of a larger buffer); one that ends a write does.
    let at = t(20) + c.rto();
    c.handle_timeout(at);
    let again = output(&mut c, at);
    assert_eq!(rel(&again)[0], (0, NO, 1000));
}

/// The peer offers 3000 bytes (SYN-ACK and ACKs alike): write-queue buffers are one segment
/// (at most half that window, Linux's `tcp_bound_to_half_wnd`), and a buffer the write fills
/// is pushed only once it ends more than 1500 bytes past the last push (`forced_push`).
#[test]
fn psh_marks_a_filled_buffer_every_half_window() {
    let mut c = syn_sent(&plain());
    let mut synack = Seg::new(S | A, IRS, ISS + 1).win(3000);
    synack.options = mss(1000);
    input(&mut c, t(10), &synack);
    output(&mut c, t(10));
    assert_eq!(c.send(&[1; 4500]), Ok(4500));
    let out = output(&mut c, t(20));
    assert_eq!(
        rel(&out),
        vec![(0, NO, 1000), (1000, PSH, 1000), (2000, NO, 1000)]
    );
    input(&mut c, t(30), &peer_ack(3000).win(3000));
    let out = output(&mut c, t(30));
    assert_eq!(rel(&out), vec![(3000, PSH, 1000), (4000, PSH, 500)]);
    let at = t(30) + c.rto();
    c.handle_timeout(at);
    let again = output(&mut c, at);
    assert_eq!(rel(&again)[0], (3000, NO, 1000));
}

#[test]
fn a_record_end_is_no_segment_middle() {
    let mut c = established_with(&nodelay(), mss(1000));
    // 10 segments fill the initial window; 400 bytes wait.
    assert_eq!(c.send(&[1; 10400]), Ok(10400));
    assert_eq!(output(&mut c, t(20)).len(), 10);
    // 400 more join them and end a record; the next write starts after it.
    let eor = SendFlags {
        eor: true,
        ..SendFlags::default()
    };
    assert_eq!(c.send_with(&[2; 400], eor), Ok(400));
    assert_eq!(c.send(&[3; 1000]), Ok(1000));
    input(&mut c, t(30), &peer_ack(10000));
    let out = output(&mut c, t(30));
    assert_eq!(rel(&out), vec![(10000, PSH, 800), (10800, PSH, 1000)]);
}

#[test]
fn msg_more_holds_a_short_tail_until_the_persist_probe() {
    let mut c = established_with(&nodelay(), mss(1000));
    let more = SendFlags {
        more: true,
        ..SendFlags::default()
    };
    assert_eq!(c.send_with(&[1; 40], more), Ok(40));
    assert!(output(&mut c, t(20)).is_empty(), "held: more follows");
    let at = c.poll_timeout().expect("the persist timer");
    c.handle_timeout(at);
    assert_eq!(rel(&output(&mut c, at)), vec![(0, PSH, 40)]);
}

#[test]
fn msg_more_holds_until_the_next_ack_and_sets_no_psh() {
    let mut c = established_with(&nodelay(), mss(1000));
    let more = SendFlags {
        more: true,
        ..SendFlags::default()
    };
    assert_eq!(c.send_with(&[1; 1100], more), Ok(1100));
    assert_eq!(rel(&output(&mut c, t(20))), vec![(0, NO, 1000)]);
    input(&mut c, t(30), &peer_ack(1000));
    assert_eq!(rel(&output(&mut c, t(30))), vec![(1000, NO, 100)]);
}

#[test]
fn a_cork_holds_writes_until_it_comes_off() {
    let mut c = established_with(&nodelay(), mss(1000));
    c.set_cork(true);
    assert_eq!(c.send(&[1; 40]), Ok(40));
    assert_eq!(c.send(&[1; 40]), Ok(40));
    assert!(output(&mut c, t(20)).is_empty());
    c.set_cork(false);
    assert_eq!(rel(&output(&mut c, t(21))), vec![(0, PSH, 80)]);
    // TCP_NODELAY set while corked pushes what waits once; the cork stays on.
    c.set_cork(true);
    assert_eq!(c.send(&[1; 40]), Ok(40));
    assert!(output(&mut c, t(22)).is_empty());
    c.set_nodelay(true);
    assert_eq!(rel(&output(&mut c, t(23))), vec![(80, PSH, 40)]);
    assert!(c.cork());
}

#[test]
fn notsent_lowat_limits_a_write_to_one_more_buffer() {
    // The peer's window, 65535 bytes, makes Linux's size goal 32000 (half of it, in whole
    // segments). Ten segments leave as the first buffer fills; the buffer takes 10000 more;
    // then 32000 bytes wait unsent, over the 4000-byte mark: the write stops at 42000.
    let mut c = established_with(&plain(), mss(1000));
    c.set_notsent_lowat(Some(4000));
    assert_eq!(c.send(&[1; 50000]), Ok(42000));
    assert!(!c.is_writable());
    assert_eq!(output(&mut c, t(20)).len(), 10);
    assert_eq!(c.send(&[1; 1000]), Ok(0));
    // Slow start sends 20 more: 12000 still wait, three times half the mark.
    input(&mut c, t(30), &peer_ack(10000));
    assert_eq!(output(&mut c, t(30)).len(), 20);
    assert!(!c.is_writable());
    // The rest goes: writable again.
    input(&mut c, t(40), &peer_ack(30000));
    assert_eq!(output(&mut c, t(40)).len(), 12);
    assert!(c.is_writable());
}

#[test]
fn new_data_waits_for_a_window_that_fits_it() {
    let mut c = established_with(&plain(), mss(1000));
    input(&mut c, t(15), &peer_ack(0).win(10));
    assert_eq!(c.send(&[1; 1000]), Ok(1000));
    // A 10-byte window: no sliver (Linux's tcp_snd_wnd_test) ...
    assert!(output(&mut c, t(20)).is_empty());
    // ... until the window opens,
    input(&mut c, t(40), &peer_ack(0).win(2000));
    assert_eq!(rel(&output(&mut c, t(40))), vec![(0, PSH, 1000)]);
}

#[test]
fn the_persist_probe_sends_what_a_small_window_takes() {
    let mut c = established_with(&plain(), mss(1000));
    input(&mut c, t(15), &peer_ack(0).win(10));
    assert_eq!(c.send(&[1; 1000]), Ok(1000));
    assert!(output(&mut c, t(20)).is_empty());
    let at = c.poll_timeout().expect("the persist timer");
    c.handle_timeout(at);
    assert_eq!(rel(&output(&mut c, at)), vec![(0, PSH, 10)]);
}

#[test]
fn busy_and_receive_window_limited_time() {
    let mut c = established_with(&plain(), mss(1000));
    input(&mut c, t(10), &peer_ack(0).win(0));
    assert_eq!(c.send(&[1; 1000]), Ok(1000));
    assert!(output(&mut c, t(20)).is_empty());
    // Limited by the zero window from 20 ms to 220 ms, then busy until acknowledged at 250.
    input(&mut c, t(220), &peer_ack(0).win(2000));
    assert_eq!(output(&mut c, t(220)).len(), 1);
    input(&mut c, t(250), &peer_ack(1000).win(2000));
    let ms = |d: synack_tcp::Duration| d.as_millis();
    let (busy, rwnd) = c.chrono_times(t(300));
    assert_eq!((ms(busy), ms(rwnd)), (230, 200));
}

/// SO_SNDBUF's accounting as Linux (`Connection::send_room_linux`): with buffers of one
/// segment (the peer offered 2000 bytes) and 4608 bytes of send buffer, three buffers fit —
/// a new one is begun while the charge (data plus 1280 bytes a buffer) is below the limit.
#[test]
fn send_room_follows_linux_buffer_accounting() {
    let mut c = syn_sent(&plain());
    let mut synack = Seg::new(S | A, IRS, ISS + 1).win(2000);
    synack.options = mss(1000);
    input(&mut c, t(10), &synack);
    output(&mut c, t(10));
    assert_eq!(c.send_room_linux(4608, 10_000), 3000);
    assert_eq!(c.send_room_linux(4608, 500), 500);
    assert_eq!(c.send(&[1; 3000]), Ok(3000));
    assert_eq!(c.send_room_linux(4608, 1000), 0, "3000 + 3 * 1280 >= 4608");
    // A larger limit takes more: 3 buffers charged 6840; two more fit under 9216.
    assert_eq!(c.send_room_linux(9216, 10_000), 2000);
}

/// Pacing (`set_max_pacing_rate`, Linux's SO_MAX_PACING_RATE): ten segments go at once, then
/// each two-segment buffer waits its length at the rate (100 kB/s: 20 ms per 2000 bytes,
/// counted from the tenth segment); the connection asks to be polled when the next may go.
#[test]
fn pacing_spaces_buffers_after_the_first_ten_segments() {
    let mut c = established_with(&nodelay(), mss(1000));
    c.set_max_pacing_rate(Some(100_000));
    assert_eq!(c.send(&[1; 16_000]), Ok(16_000));
    assert_eq!(output(&mut c, t(20)).len(), 10);
    input(&mut c, t(30), &peer_ack(10_000));
    assert!(
        output(&mut c, t(30)).is_empty(),
        "the window is open, the pace is not"
    );
    assert_eq!(c.poll_timeout(), Some(t(40)));
    for (at, from) in [(40, 10_000), (60, 12_000), (80, 14_000)] {
        assert!(output(&mut c, t(at - 1)).is_empty());
        c.handle_timeout(t(at));
        assert_eq!(
            rel(&output(&mut c, t(at))),
            vec![(from, NO, 1000), (from + 1000, PSH, 1000)],
            "at {at} ms"
        );
    }
}
