//! `synack get`.

use std::io::{self, Write};
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http::header::CONNECTION;
use http::{Method, Request};
use synack_http::{
    Client, ClientConfig, Connector, KernelConnector, Origin, PoolConfig, RequestInfo,
    SynackConnector,
};
use synack_stack::net::nc;

use super::{duration, ms, Transport};

/// Examples shown after the help of `synack get`.
pub const GET_EXAMPLES: &str = "\
Examples:
  synack get --tun tun0 --ip 198.18.0.2/24 -v http://198.18.0.1/ http://198.18.0.1/a.html
  synack get --kernel -v --stats http://127.0.0.1:8080/ http://127.0.0.1:8080/bytes/100
  synack get --kernel --interval 3s -v URL URL      pause between requests (idle timeouts)";

/// Flags of `synack get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The URLs to fetch, in order (http:// only; over TUN, hosts must be IP addresses).
    #[arg(value_name = "URL", required = true)]
    pub urls: Vec<String>,

    #[command(flatten)]
    pub transport: Transport,

    /// The request method.
    #[arg(short = 'X', long, value_name = "METHOD", default_value = "GET")]
    pub method: String,

    /// A request body (sent with every request).
    #[arg(short, long, value_name = "DATA")]
    pub data: Option<String>,

    /// Send `Connection: close`: a new connection for every request.
    #[arg(long)]
    pub close: bool,

    /// Wait this long between requests.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub interval: Option<Duration>,

    /// Do not print the response bodies.
    #[arg(long)]
    pub no_body: bool,

    /// Show, for each request, whether it opened a new connection (and its handshake) or
    /// reused one, on standard error.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print the client's metrics as one JSON object on the last line of stdout.
    #[arg(long)]
    pub stats: bool,

    /// Connections per origin at most.
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Pool")]
    pub max_per_origin: usize,

    /// Idle connections kept per origin at most.
    #[arg(long, value_name = "N", default_value_t = 8, help_heading = "Pool")]
    pub max_idle: usize,

    /// Close a connection idle this long.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = duration, help_heading = "Pool")]
    pub idle_timeout: Duration,

    /// Wait this long at most for a free connection.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration, help_heading = "Pool")]
    pub pool_wait_timeout: Duration,

    /// Time allowed for a TCP handshake.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, help_heading = "Pool")]
    pub connect_timeout: Duration,

    /// Time allowed for a request and its whole response.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration, help_heading = "Pool")]
    pub request_timeout: Duration,

    /// Retire an idle connection this long before the server's `Keep-Alive: timeout`.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration, help_heading = "Pool")]
    pub keepalive_margin: Duration,
}

impl GetArgs {
    fn config(&self) -> ClientConfig {
        ClientConfig {
            pool: PoolConfig {
                max_per_origin: self.max_per_origin.max(1),
                max_idle_per_origin: self.max_idle,
                idle_timeout: self.idle_timeout,
                pool_wait_timeout: self.pool_wait_timeout,
            },
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            keepalive_margin: self.keepalive_margin,
            ..ClientConfig::default()
        }
    }
}

fn describe(i: &RequestInfo) -> String {
    let how = match (i.reused, i.handshake) {
        (true, _) => format!(
            "reused connection #{} (request {} on it, no handshake)",
            i.connection, i.request_on_connection
        ),
        (false, Some(h)) => format!(
            "new connection #{} (handshake {}{})",
            i.connection,
            ms(h),
            i.local_addr
                .zip(i.peer_addr)
                .map(|(l, p)| format!(", {l} -> {p}"))
                .unwrap_or_default()
        ),
        (false, None) => format!("connection #{}", i.connection),
    };
    let mut extra = String::new();
    if i.retried {
        extra.push_str("; retried after the reused connection failed");
    }
    if let Some(ka) = i.keep_alive {
        extra.push_str(&format!(
            "; server keep-alive: timeout={}, max={}",
            ka.timeout.map_or("-".into(), |t| t.as_secs().to_string()),
            ka.max.map_or("-".into(), |m| m.to_string())
        ));
    }
    if i.closed_after {
        extra.push_str("; connection closed after it");
    }
    format!("{how}{extra}")
}

async fn fetch_all(args: &GetArgs, client: &Client) -> io::Result<usize> {
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid --method"))?;
    let body = Bytes::from(args.data.clone().unwrap_or_default().into_bytes());
    let mut failed = 0;
    let stdout = io::stdout();
    for (k, url) in args.urls.iter().enumerate() {
        if k > 0 {
            if let Some(d) = args.interval {
                tokio::time::sleep(d).await;
            }
        }
        let (uri, _) = Origin::parse(url).map_err(invalid_url)?;
        let mut b = Request::builder().method(method.clone()).uri(uri);
        if args.close {
            b = b.header(CONNECTION, "close");
        }
        let req = b
            .body(body.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
        let t0 = tokio::time::Instant::now();
        match client.send(req).await {
            Ok(r) => {
                // The body goes to stdout as it arrives, never whole in memory.
                let (head, mut body) = r.into_parts();
                let mut got = 0u64;
                let mut error = None;
                while let Some(chunk) = body.chunk().await {
                    match chunk {
                        Ok(d) => {
                            got += d.len() as u64;
                            if !args.no_body {
                                let mut out = stdout.lock();
                                out.write_all(&d)?;
                                out.flush()?;
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                if args.verbose {
                    let info = head.extensions.get::<RequestInfo>().cloned();
                    eprintln!(
                        "{method} {url} -> {} ({got} bytes in {}): {}",
                        head.status,
                        ms(t0.elapsed()),
                        info.as_ref().map(describe).unwrap_or_default()
                    );
                }
                if let Some(e) = error {
                    eprintln!("synack get: {method} {url}: the body failed after {got} bytes: {e}");
                    failed += 1;
                } else if !head.status.is_success() {
                    // Said whether or not -v is on: the body alone may not tell.
                    if !args.verbose {
                        eprintln!("synack get: {method} {url}: {}", head.status);
                    }
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("synack get: {}", explain(&method, url, &e));
                failed += 1;
            }
        }
    }
    Ok(failed)
}

/// A failed request in one line, naming the request once.
fn explain(method: &Method, url: &str, e: &synack_http::Error) -> String {
    use synack_http::Error;
    match e {
        Error::Connect { source, .. } => format!("{method} {url}: could not connect: {source}"),
        Error::ConnectTimeout { timeout, .. } => {
            format!("{method} {url}: could not connect: no handshake within {timeout:?}")
        }
        // It names the method and URL itself.
        Error::MaybeProcessed { .. } => e.to_string(),
        _ => format!("{method} {url}: {e}"),
    }
}

fn invalid_url(e: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("invalid URL {e}"))
}

/// Runs `synack get`; fails unless every request got a 2xx response (the metrics are
/// printed either way). Every URL is checked before anything is fetched: an invalid one is
/// an error naming it and what is wrong.
pub fn run_get(args: &GetArgs) -> io::Result<()> {
    for url in &args.urls {
        Origin::parse(url).map_err(invalid_url)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (client, stack) = if args.transport.kernel {
            (client_with(KernelConnector::new(), args), None)
        } else {
            let stack = nc::open_stack(&args.transport.tun_opts(false))?;
            (client_with(SynackConnector::new(&stack), args), Some(stack))
        };
        let failed = fetch_all(args, &client).await?;
        let m = client.metrics();
        if args.verbose {
            eprintln!(
                "synack get: {} requests on {} connections ({} handshakes, {} reused, {} \
                 retried; reuse ratio {:.2})",
                m.requests,
                m.connections_opened,
                m.handshakes,
                m.reused,
                m.retries,
                m.reuse_ratio()
            );
        }
        drop(client);
        if let Some(stack) = stack {
            // Let the closes finish before the device goes.
            stack.wait_idle(Duration::from_secs(5)).await;
        }
        if args.stats {
            println!("{}", m.to_json());
        }
        if failed > 0 {
            return Err(io::Error::other(format!(
                "{failed} of {} requests failed",
                args.urls.len()
            )));
        }
        Ok(())
    })
}

fn client_with(c: impl Connector, args: &GetArgs) -> Client {
    Client::new(c, args.config())
}
