//! Connection churn from the kernel against synack's server over TUN, in a namespace the test
//! makes (root needed: skipped with a message otherwise, failed when CI=true).
//!
//! wrk with `Connection: close` makes the server close first, so synack holds TIME-WAIT for
//! every connection while the kernel reuses its ports at once: each new SYN for a tuple in
//! TIME-WAIT reopens it (RFC 9293 §3.10.7.4, RFC 6191). This once freed connection slots twice,
//! lost the ACK of the kernel's FIN (the kernel sat in LAST-ACK retransmitting it) and made the
//! server stop accepting. Every FIN must be acknowledged, no connection may fail, and the
//! server must go on accepting.

mod netns;

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use netns::{have_tool, privileged, Netns};
use synack_http::routes::Routes;
use synack_http::{serve, ServerConfig};
use synack_stack::net::nc::{self, TunOpts};
use synack_stack::net::TcpListener;
use synack_stack::pcap::PcapReader;
use synack_wire::{IpRepr, TcpFlags, TcpRepr};

const KERNEL: &str = "198.18.0.1";
const OURS: &str = "198.18.0.2";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The kernel's TCP sockets in the namespace that are still closing (`ss` state filter).
fn kernel_closing(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-tanH", "state", "last-ack"])
        .output()
        .expect("ss");
    text(&out.stdout)
}

/// Every FIN in a capture, by sender and sequence number: more than one copy of the same FIN
/// is a retransmission.
fn retransmitted_fins(pcap: &[u8]) -> Vec<String> {
    let mut fins: HashMap<(IpAddr, u16, u16, u32), usize> = HashMap::new();
    for (_, pkt) in PcapReader::read_all(pcap).expect("a whole capture") {
        let Ok((ip, payload)) = IpRepr::parse(&pkt) else {
            continue;
        };
        let Ok(seg) = TcpRepr::parse(payload, None) else {
            continue;
        };
        if seg.flags.contains(TcpFlags::FIN) {
            let key = (ip.src(), seg.src_port, seg.dst_port, seg.seq);
            *fins.entry(key).or_default() += 1;
        }
    }
    let mut v: Vec<String> = fins
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|((ip, sp, dp, seq), n)| format!("{ip}:{sp}->{dp} seq {seq}: {n} copies"))
        .collect();
    v.sort();
    v
}

#[test]
fn wrk_churn_with_and_without_connection_close_has_no_errors_and_no_lost_fin_ack() {
    let test = "wrk_churn_with_and_without_connection_close_has_no_errors_and_no_lost_fin_ack";
    if !privileged(test)
        || !have_tool("wrk", &["-v"], test) && Command::new("wrk").output().is_err()
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("synack-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("tun.pcap");
    let ns = Netns::new("churn");
    let name = ns.name.clone();
    let p = pcap.clone();
    ns.run(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut opts = TunOpts::new("synchurn0", format!("{OURS}/24").parse().unwrap());
            opts.pcap = Some(p);
            let stack = nc::open_stack(&opts).expect("TUN device and stack");
            let l = TcpListener::bind(&stack, (OURS.parse::<IpAddr>().unwrap(), 80))
                .await
                .unwrap();
            let srv = serve(l, ServerConfig::default(), Routes::new());
            let ns = Netns { name: name.clone() };
            for close in [true, false] {
                let before = srv.stats();
                let mut c = ns.command(60, "wrk");
                c.args(["-t", "2", "-c", "16", "-d", "5s"]);
                if close {
                    c.args(["-H", "Connection: close"]);
                }
                c.arg(format!("http://{OURS}/bytes/100"));
                let out = tokio::task::spawn_blocking(move || c.output())
                    .await
                    .unwrap()
                    .expect("run wrk");
                let s = text(&out.stdout);
                eprintln!("Connection: close = {close}\n{s}");
                assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
                assert!(!s.contains("Socket errors"), "{s}");
                assert!(!s.contains("Non-2xx"), "{s}");
                let st = srv.stats();
                assert!(st.requests - before.requests > 100, "{st:?}");
                if close {
                    // One request per connection, each closed by the server.
                    let conns = st.connections - before.connections;
                    assert!(conns > 100, "{st:?}");
                    assert!(st.requests - before.requests <= conns, "{st:?}");
                }
                // Every kernel socket finishes its close at once: its FIN was acknowledged.
                let start = Instant::now();
                loop {
                    let closing = kernel_closing(&name);
                    if closing.trim().is_empty() {
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(3),
                        "kernel sockets stuck in LAST-ACK:\n{closing}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            // The server still accepts (it once stopped after the churn).
            let mut c = ns.command(10, "curl");
            c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://{OURS}/"));
            let out = tokio::task::spawn_blocking(move || c.output())
                .await
                .unwrap()
                .expect("run curl");
            assert_eq!(text(&out.stdout), "200", "{}", text(&out.stderr));
            std::mem::forget(ns);
            let st = srv.shutdown(Duration::from_secs(10)).await;
            // No server-side error. wrk stops each run by dropping its 16 connections, some
            // with a request in flight: those, and only those, may end as client aborts.
            assert_eq!(st.errors, 0, "{st:?}");
            assert!(st.aborted_by_peer <= 2 * 16, "{st:?}");
            stack.wait_idle(Duration::from_secs(5)).await;
            stack.flush_pcap().unwrap();
        })
    });
    let bytes = std::fs::read(&pcap).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let fins = retransmitted_fins(&bytes);
    assert!(fins.is_empty(), "retransmitted FINs:\n{}", fins.join("\n"));
    let _ = KERNEL;
}

/// The same wrk runs against the same server on kernel sockets (loopback): 0 socket errors,
/// 0 server errors, with and without `Connection: close`.
#[test]
fn wrk_churn_against_the_kernel_socket_server_has_no_errors() {
    let test = "wrk_churn_against_the_kernel_socket_server_has_no_errors";
    if !have_tool("wrk", &["-v"], test) && Command::new("wrk").output().is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = serve(l, ServerConfig::default(), Routes::new());
        for close in [true, false] {
            let mut c = Command::new("timeout");
            c.args(["60", "wrk", "-t", "2", "-c", "16", "-d", "3s"]);
            if close {
                c.args(["-H", "Connection: close"]);
            }
            c.arg(format!("http://{addr}/bytes/100"));
            let out = tokio::task::spawn_blocking(move || c.output())
                .await
                .unwrap()
                .expect("run wrk");
            let s = text(&out.stdout);
            eprintln!("kernel sockets, Connection: close = {close}\n{s}");
            assert!(out.status.success(), "{s}\n{}", text(&out.stderr));
            assert!(!s.contains("Socket errors"), "{s}");
            assert!(!s.contains("Non-2xx"), "{s}");
        }
        let st = srv.shutdown(Duration::from_secs(10)).await;
        assert_eq!(st.errors, 0, "{st:?}");
        assert!(st.aborted_by_peer <= 2 * 16, "{st:?}");
        assert!(st.requests > 1000, "{st:?}");
    });
}
