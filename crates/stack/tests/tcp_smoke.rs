mod common;

use common::*;
use synack_tcp::{Config, Duration, State};

#[test]
fn echo_over_50ms_rtt() {
    let mut p = Pair::new(1, Duration::from_millis(50), Config::default());
    let l = p.listen(80);
    let c = p.connect(80);
    let mut s = None;
    assert!(p.run_until(Duration::from_secs(1), |p| {
        s = p.net.host_mut(p.server).tcp_mut().accept(l);
        s.is_some()
    }));
    let s = s.unwrap();
    let now = p.now();
    let n = p
        .net
        .host_mut(p.client)
        .tcp_mut()
        .with_conn(now, c, |c| c.send(b"hello").unwrap())
        .unwrap();
    assert_eq!(n, 5);
    p.net.flush();
    let mut got = Vec::new();
    assert!(p.run_until(Duration::from_secs(1), |p| {
        let now = p.now();
        let mut buf = [0u8; 100];
        let n = p
            .net
            .host_mut(p.server)
            .tcp_mut()
            .with_conn(now, s, |c| c.recv(&mut buf).unwrap())
            .unwrap();
        got.extend_from_slice(&buf[..n]);
        got.len() == 5
    }));
    assert_eq!(&got, b"hello");
    let now = p.now();
    p.net.host_mut(p.client).tcp_mut().close(now, c);
    p.net.host_mut(p.server).tcp_mut().close(now, s);
    p.net.flush();
    p.run_until(Duration::from_secs(200), |_| false);
    for r in p.client_trace() {
        println!("client {r:?}");
    }
    for r in p.server_trace() {
        println!("server {r:?}");
    }
    assert_eq!(p.net.host(p.client).tcp().connection_count(), 0);
    assert_eq!(p.net.host(p.server).tcp().connection_count(), 0);
    let _ = State::Closed;
}
