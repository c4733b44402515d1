//! What the shard tests share: the check that a connection lives on the shard its flow hashes
//! to, and an echo server that makes that check on every connection it accepts.

use std::net::SocketAddr;

use synack_stack::net::{shard_of, Stack, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asserts that `s` is driven by the shard its 4-tuple hashes to.
pub fn check_on_its_shard(s: &TcpStream) {
    let (l, r) = (s.local_addr().unwrap(), s.peer_addr().unwrap());
    let n = s.stack().workers();
    assert_eq!(
        s.stack().shard_index(),
        shard_of(l, r, n),
        "{l} -> {r} on the wrong shard"
    );
}

/// Echoes everything on `conns` connections accepted at `at`, each checked to be on its
/// shard; the task ends when every one has been echoed to its end.
pub async fn echo_server(
    stack: &Stack,
    at: SocketAddr,
    conns: usize,
) -> tokio::task::JoinHandle<()> {
    let l = TcpListener::bind(stack, at).await.unwrap();
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut s, _) = l.accept().await.unwrap();
            check_on_its_shard(&s);
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
}
