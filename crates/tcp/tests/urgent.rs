//! The URG bit (RFC 9293 §3.10.7.4, sixth step): the urgent byte is marked where BSD and Linux
//! put it (RFC 6093 §2: the pointer names the byte after it), for readers that stop there.

mod harness;

use harness::*;
use synack_wire::{TcpFlags, TcpOptions, TcpRepr};

#[test]
fn the_urgent_byte_is_marked_until_read_past() {
    let mut c = established(&plain());
    assert_eq!(c.urgent_mark(), None);
    let tu = tuple();
    let data = [7u8; 100];
    let seg = TcpRepr {
        src_port: tu.remote.port(),
        dst_port: tu.local.port(),
        seq: IRS + 1,
        ack: ISS + 1,
        flags: A | TcpFlags::URG,
        window: 65535,
        urgent: 100,
        options: TcpOptions::default(),
        payload: &data,
    };
    c.handle_segment(t(20), &seg);
    // 99 bytes before the urgent one.
    assert_eq!(c.urgent_mark(), Some(99));
    let mut buf = [0u8; 40];
    assert_eq!(c.recv(&mut buf), Ok(40));
    assert_eq!(c.urgent_mark(), Some(59));
    let mut rest = [0u8; 100];
    assert_eq!(c.recv(&mut rest), Ok(60));
    assert_eq!(c.urgent_mark(), None, "read past");
}
