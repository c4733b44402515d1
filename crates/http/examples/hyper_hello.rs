//! hyper's own HTTP/1.1 server, nothing else: the baseline `scripts/http-bench.sh` compares
//! `synack serve --kernel` with (keep-alive, a short fixed response, kernel sockets).
//!
//!     cargo run --release -p synack-http --example hyper_hello -- 127.0.0.1:8081 [THREADS]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            eprintln!("hyper_hello listening on {}", listener.local_addr()?);
            loop {
                let (s, _) = listener.accept().await?;
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let service = service_fn(|_req: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello from hyper\n",
                        ))))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(s), service)
                        .await;
                });
            }
        })
}
