//! A client host and a server host on the simulated network, and the services the tests run.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use synack_http::{serve, Client, ClientConfig, ServerConfig, ServerHandle, SynackConnector};
use synack_stack::net::{SimNet, Stack, TcpListener};
use synack_stack::sim::PathConfig;
use synack_tcp::Config;

pub const CLIENT: &str = "198.18.0.1";
pub const SERVER: &str = "198.18.0.2";
pub const RTT: Duration = Duration::from_millis(50);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `http://198.18.0.2{path}`.
pub fn url(path: &str) -> String {
    format!("http://{SERVER}{path}")
}

/// Two hosts joined by a path of `rtt` (half each way).
pub fn two_hosts(seed: u64, rtt: Duration) -> (SimNet, Stack, Stack) {
    let net = SimNet::new(seed);
    let a = net.add_host("client", &[ip(CLIENT)], Config::default());
    let b = net.add_host("server", &[ip(SERVER)], Config::default());
    let half = PathConfig::delay(rtt / 2);
    net.link(&a, &b, half.clone(), half);
    (net, a, b)
}

/// What the test server counts.
#[derive(Debug, Default)]
pub struct Counts {
    pub gets: AtomicU64,
    pub posts: AtomicU64,
}

impl Counts {
    pub fn posts(&self) -> u64 {
        self.posts.load(Ordering::SeqCst)
    }
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }
}

/// A service counting what it processes: `GET /delay/MS` waits, anything else answers at
/// once; a POST is counted once its body has been read (it was processed).
pub fn counting_service(
    counts: Arc<Counts>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let counts = counts.clone();
        async move {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            if method == Method::POST {
                counts.posts.fetch_add(1, Ordering::SeqCst);
            } else {
                counts.gets.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(ms) = path.strip_prefix("/delay/") {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let n = body.map(|b| b.len()).unwrap_or(0);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "{method} {path} {n}\n"
            )))))
        }
    })
}

/// A server on `b` port 80 running the counting service.
pub async fn server(b: &Stack, config: ServerConfig) -> (ServerHandle, Arc<Counts>) {
    let listener = TcpListener::bind(b, SocketAddr::new(ip(SERVER), 80))
        .await
        .unwrap();
    let counts = Arc::new(Counts::default());
    let h = serve(listener, config, counting_service(counts.clone()));
    (h, counts)
}

/// A client on `a`.
pub fn client(a: &Stack, config: ClientConfig) -> Client {
    Client::new(SynackConnector::new(a), config)
}
