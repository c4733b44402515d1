//! A stack of two workers over a multiqueue TUN device (`IFF_MULTI_QUEUE`, one queue each),
//! with the Linux kernel on the other side, in a network namespace the test makes (root and
//! /dev/net/tun needed: skipped with a message otherwise, failed when CI=true).
//!
//! Kernel clients connect to synack and synack connects to a kernel server: every byte comes
//! back exact, each connection lives on the shard its flow hashes to, and what the kernel put
//! on the other queue (the first packets of the flows it starts, spread by its own hash) is
//! handed on to the owner, never answered with a reset.

mod shards_support;
mod tun_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use shards_support::{check_on_its_shard, echo_server};
use synack_stack::net::{Stack, StackConfig, TcpStream};
use synack_stack::tun::{TunConfig, TunDevice, TunOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tun_support::{privileged, Netns};

const KERNEL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CONNS: usize = 16;

fn message(i: usize) -> Vec<u8> {
    (0..5000).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

#[test]
fn two_workers_on_a_multiqueue_tun_with_the_kernel_both_ways() {
    if !privileged("two_workers_on_a_multiqueue_tun_with_the_kernel_both_ways") {
        return;
    }
    let ns = Netns::new("mq");
    ns.run(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tc = TunConfig::new("synackmq0");
            tc.addrs = vec![(IpAddr::V4(KERNEL), 24)];
            let queues = TunDevice::create_queues(&tc, TunOptions::default(), 2).unwrap();
            assert_eq!(queues.len(), 2);
            let mut config = StackConfig::new(&[IpAddr::V4(OURS)]);
            config.workers = 2;
            let stack = Stack::new_multiqueue(queues, config).unwrap();

            // Kernel clients to synack's echo server.
            let server = echo_server(&stack, SocketAddr::new(IpAddr::V4(OURS), 7000), CONNS).await;
            let mut clients = Vec::new();
            for i in 0..CONNS {
                clients.push(tokio::spawn(async move {
                    let to = SocketAddr::new(IpAddr::V4(OURS), 7000);
                    let mut s = tokio::net::TcpStream::connect(to).await.unwrap();
                    let msg = message(i);
                    s.write_all(&msg).await.unwrap();
                    s.shutdown().await.unwrap();
                    let mut back = Vec::new();
                    s.read_to_end(&mut back).await.unwrap();
                    assert_eq!(back, msg, "kernel client {i}");
                }));
            }
            for c in clients {
                timeout(Duration::from_secs(60), c).await.unwrap().unwrap();
            }
            server.await.unwrap();

            // synack's clients to a kernel echo server.
            let kl = tokio::net::TcpListener::bind((KERNEL, 7001)).await.unwrap();
            let kserver = tokio::spawn(async move {
                for _ in 0..CONNS {
                    let (mut s, _) = kl.accept().await.unwrap();
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                        let _ = w.shutdown().await;
                    });
                }
            });
            let mut clients = Vec::new();
            for i in 0..CONNS {
                let stack = stack.clone();
                clients.push(tokio::spawn(async move {
                    let to = SocketAddr::new(IpAddr::V4(KERNEL), 7001);
                    let mut s = TcpStream::connect(&stack, to).await.unwrap();
                    check_on_its_shard(&s);
                    let msg = message(100 + i);
                    s.write_all(&msg).await.unwrap();
                    s.shutdown().await.unwrap();
                    let mut back = Vec::new();
                    s.read_to_end(&mut back).await.unwrap();
                    assert_eq!(back, msg, "synack client {i}");
                }));
            }
            for c in clients {
                timeout(Duration::from_secs(60), c).await.unwrap().unwrap();
            }
            kserver.await.unwrap();
            assert!(stack.wait_idle(Duration::from_secs(10)).await);

            let mut per_shard = Vec::new();
            let (mut forwarded, mut from_shards) = (0, 0);
            for shard in stack.shards() {
                let t = shard.tcp_stats();
                let d = shard.device_stats().unwrap();
                assert_eq!(t.resets_sent, 0, "shard {}", shard.shard_index());
                per_shard.push((t.accepted, t.connects));
                forwarded += d.rx_forwarded;
                from_shards += d.rx_from_shards;
            }
            let accepted: u64 = per_shard.iter().map(|s| s.0).sum();
            let connects: u64 = per_shard.iter().map(|s| s.1).sum();
            assert_eq!((accepted, connects), (CONNS as u64, CONNS as u64));
            assert!(
                per_shard.iter().all(|s| s.1 == CONNS as u64 / 2),
                "{per_shard:?}"
            );
            assert_eq!(forwarded, from_shards);
            eprintln!("per shard (accepted, connects): {per_shard:?}; handed on: {forwarded}");
        });
    });
}
