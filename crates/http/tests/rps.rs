//! Requests per second (a measurement, not an assertion): synack-http's client and server on
//! synack's stack over the simulated network with zero delay, against the same client and
//! server (hyper) on the kernel's TCP over loopback, in the same run, on one keep-alive
//! connection and on 16 at once. Wall-clock time, current-thread runtimes for both.
//!
//! ```text
//! cargo test --release -p synack-http --test rps -- --ignored --nocapture
//! ```
//! `SYNACK_RPS_REQUESTS` sets the requests per case (default 50000).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use synack_http::routes::Routes;
use synack_http::{
    serve, Client, ClientConfig, KernelConnector, PoolConfig, ServerConfig, SynackConnector,
};
use synack_stack::net::TcpListener;

fn requests() -> usize {
    std::env::var("SYNACK_RPS_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

fn config(conns: usize) -> ClientConfig {
    ClientConfig {
        pool: PoolConfig {
            max_per_origin: conns,
            max_idle_per_origin: conns,
            ..PoolConfig::default()
        },
        ..ClientConfig::default()
    }
}

/// `n` GETs of `url` over `conns` lanes; returns requests per second and connections opened.
async fn load(client: &Client, url: &str, n: usize, conns: usize) -> (f64, u64) {
    // Warm up: open the connections.
    let warm: Vec<_> = (0..conns)
        .map(|_| {
            let (c, u) = (client.clone(), url.to_owned());
            tokio::spawn(async move { c.get(&u).await.unwrap() })
        })
        .collect();
    for w in warm {
        w.await.unwrap();
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|k| {
            let (c, u) = (client.clone(), url.to_owned());
            let mine = (n + conns - 1 - k) / conns;
            tokio::spawn(async move {
                for _ in 0..mine {
                    let r = c.get(&u).await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    (n as f64 / secs, client.metrics().connections_opened)
}

/// No limit of requests per connection: each lane keeps its connection.
fn server_config() -> ServerConfig {
    ServerConfig {
        keepalive_requests: u64::MAX,
        ..ServerConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn synack_case(conns: usize, n: usize) -> (f64, u64) {
    rt().block_on(async {
        let (_net, a, b) = common::two_hosts(1, Duration::ZERO);
        let l = TcpListener::bind(&b, SocketAddr::new(common::ip(common::SERVER), 80))
            .await
            .unwrap();
        let srv = serve(l, server_config(), Routes::new());
        let c = Client::new(SynackConnector::new(&a), config(conns));
        let r = tokio::time::timeout(
            Duration::from_secs(300),
            load(&c, &common::url("/"), n, conns),
        )
        .await
        .expect("bounded");
        drop(c);
        srv.shutdown(Duration::from_secs(5)).await;
        r
    })
}

fn kernel_case(conns: usize, n: usize) -> (f64, u64) {
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = serve(l, server_config(), Routes::new());
        let c = Client::new(KernelConnector::new(), config(conns));
        let url = format!("http://{addr}/");
        let r = tokio::time::timeout(Duration::from_secs(300), load(&c, &url, n, conns))
            .await
            .expect("bounded");
        drop(c);
        srv.shutdown(Duration::from_secs(5)).await;
        r
    })
}

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn requests_per_second_synack_vs_kernel() {
    let n = requests();
    println!("requests per second, GET / (18-byte body), {n} requests per case, wall clock");
    println!(
        "{:<34} {:>12} {:>12} {:>8}",
        "case", "synack sim", "kernel lo", "ratio"
    );
    for conns in [1usize, 16] {
        let (s, sc) = synack_case(conns, n);
        let (k, kc) = kernel_case(conns, n);
        assert_eq!(
            (sc, kc),
            (conns as u64, conns as u64),
            "one connection per lane"
        );
        println!(
            "{:<34} {:>12.0} {:>12.0} {:>8.2}",
            format!("{conns} keep-alive connection(s)"),
            s,
            k,
            s / k
        );
    }
}
