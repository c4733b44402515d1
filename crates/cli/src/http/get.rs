//! `synack get`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Args;
use http::header::CONNECTION;
use http::{Method, Request};
use synack_http::{
    CertVerification, Client, ClientConfig, Connector, Http2ClientConfig, KernelConnector, Origin,
    PoolConfig, Protocol, RequestInfo, SynackConnector, TlsClientConfig,
};
use synack_stack::net::nc;

use super::{duration, ms, Transport};

/// Examples shown after the help of `synack get`.
pub const GET_EXAMPLES: &str = "\
Examples:
  synack get --tun tun0 --ip 198.18.0.2/24 -v http://198.18.0.1/ http://198.18.0.1/a.html
  synack get --kernel -v --stats http://127.0.0.1:8080/ http://127.0.0.1:8080/bytes/100
  synack get --kernel --interval 3s -v URL URL      pause between requests (idle timeouts)
  synack get --kernel --http2 --parallel 10 --stats http://127.0.0.1:8080/a http://127.0.0.1:8080/b
                                                    h2c: the URLs as streams of one connection
  synack get --kernel -k -v https://127.0.0.1:8443/ HTTP/2 or HTTP/1.1 as ALPN picks, any cert
  synack get --kernel --cacert ca.pem https://localhost:8443/   trust only ca.pem's certificates
  synack get --kernel --http3 -k -v https://127.0.0.1:8443/a https://127.0.0.1:8443/b
                                                    HTTP/3: the URLs as streams of one QUIC connection
  synack get --kernel --http3 --early-data --close -k -v URL URL   the second resumes in 0-RTT";

/// Flags of `synack get`.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The URLs to fetch, in order (http:// or https://; over TUN, hosts must be IP
    /// addresses).
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
    #[arg(long, value_name = "DURATION", value_parser = duration, conflicts_with = "parallel")]
    pub interval: Option<Duration>,

    /// Send up to N requests at once (over HTTP/2, as streams of one connection). Each body
    /// is then kept until the ones before it are printed: the output stays in URL order.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,

    /// Do not print the response bodies.
    #[arg(long)]
    pub no_body: bool,

    /// Show, for each request, whether it opened a new connection (and its handshake) or
    /// reused one, on standard error.
    #[arg(short, long)]
    pub verbose: bool,

    /// Print the client's metrics (connections and handshakes, requests, reuse, retries by
    /// reason, HTTP/2 connections, streams and GOAWAYs, TLS handshakes) as one JSON object
    /// on the last line of stdout.
    #[arg(long)]
    pub stats: bool,

    /// Print one JSON document on stdout instead of the bodies (schema `synack-get/1`):
    /// `{"schema", "requests": [{"method", "url", "status", "bytes", "ms", "error",
    /// "connection", "new_connection", "reused", "request_on_connection", "protocol",
    /// "handshake_ms", "tls", "tls_handshake_ms", "retried_after"}], "metrics": {...}}`, the
    /// metrics as `--stats` prints them.
    #[arg(long)]
    pub json: bool,

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

    /// Time allowed for a TCP handshake (and then for a TLS handshake, for https://).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, help_heading = "Pool")]
    pub connect_timeout: Duration,

    /// Time allowed for a request and its whole response.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration, help_heading = "Pool")]
    pub request_timeout: Duration,

    /// Retire an idle connection this long before the server's `Keep-Alive: timeout`.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration, help_heading = "Pool")]
    pub keepalive_margin: Duration,

    /// Speak HTTP/2 to http:// URLs without asking (prior knowledge, h2c).
    #[arg(long, help_heading = "HTTP/2 and TLS")]
    pub http2: bool,

    /// Offer only http/1.1 by ALPN to https:// URLs (by default h2 first, then http/1.1).
    #[arg(
        long = "http1.1",
        conflicts_with = "http2",
        help_heading = "HTTP/2 and TLS"
    )]
    pub http1_1: bool,

    /// When every HTTP/2 connection is at the server's SETTINGS_MAX_CONCURRENT_STREAMS,
    /// open another (up to --max-per-origin) instead of waiting for a stream.
    #[arg(long, help_heading = "HTTP/2 and TLS")]
    pub http2_multiple_connections: bool,

    /// PING an HTTP/2 connection this often; one left unanswered for --ping-timeout closes
    /// it.
    #[arg(long, value_name = "DURATION", value_parser = duration, help_heading = "HTTP/2 and TLS")]
    pub ping_interval: Option<Duration>,

    /// How long a PING may go unanswered.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = duration, help_heading = "HTTP/2 and TLS")]
    pub ping_timeout: Duration,

    /// Trust only the certificates in this PEM file (instead of the system's roots).
    #[arg(long, value_name = "FILE", help_heading = "HTTP/2 and TLS")]
    pub cacert: Option<PathBuf>,

    /// INSECURE: accept any server certificate, whoever it names and whoever signed it.
    #[arg(
        short = 'k',
        long,
        conflicts_with = "cacert",
        help_heading = "HTTP/2 and TLS"
    )]
    pub insecure: bool,

    /// Speak HTTP/3 over QUIC (UDP) to https:// URLs: one QUIC connection carries every
    /// request as a stream.
    #[arg(long, conflicts_with_all = ["http2", "http1_1"], help_heading = "HTTP/3")]
    pub http3: bool,

    /// With --http3: send requests in 0-RTT on a connection that resumes an earlier session
    /// (only GET and HEAD; see --close for one connection per URL).
    #[arg(long, requires = "http3", help_heading = "HTTP/3")]
    pub early_data: bool,

    /// Follow Alt-Svc (RFC 7838): the first request to an https:// origin goes over TCP
    /// (HTTP/2 or HTTP/1.1 as ALPN picks); when its response advertises h3=":PORT", the later
    /// ones go over HTTP/3 on that UDP port, as streams of one QUIC connection, for the
    /// advertised max age. A QUIC handshake not done within --connect-timeout falls back to
    /// TCP. URLs are fetched one after another.
    #[arg(long, conflicts_with_all = ["http3", "http2", "http1_1", "parallel"], help_heading = "HTTP/3")]
    pub alt_svc: bool,
}

impl GetArgs {
    fn config(&self) -> io::Result<ClientConfig> {
        let verification = if self.insecure {
            CertVerification::InsecureAcceptAnyCertificate
        } else if let Some(f) = &self.cacert {
            CertVerification::ca_file(f)?
        } else {
            CertVerification::SystemRoots
        };
        Ok(ClientConfig {
            pool: PoolConfig {
                max_per_origin: self.max_per_origin.max(1),
                max_idle_per_origin: self.max_idle,
                idle_timeout: self.idle_timeout,
                pool_wait_timeout: self.pool_wait_timeout,
            },
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            keepalive_margin: self.keepalive_margin,
            http2: Http2ClientConfig {
                prior_knowledge: self.http2,
                alpn: !self.http1_1,
                enable_multiple_connections: self.http2_multiple_connections,
                keep_alive_interval: self.ping_interval,
                keep_alive_timeout: self.ping_timeout,
                keep_alive_while_idle: self.ping_interval.is_some(),
                ..Http2ClientConfig::default()
            },
            tls: TlsClientConfig { verification },
            ..ClientConfig::default()
        })
    }
}

fn describe(i: &RequestInfo) -> String {
    let what = match i.protocol {
        Protocol::Http1 => "request",
        Protocol::Http2 => "stream",
    };
    let tls = i
        .tls_handshake
        .map(|t| format!(", TLS handshake {}", ms(t)))
        .unwrap_or_default();
    let how = match (i.reused, i.handshake) {
        (true, _) => format!(
            "reused connection #{} ({what} {} on it, no handshake)",
            i.connection, i.request_on_connection
        ),
        (false, Some(h)) => format!(
            "new connection #{} (handshake {}{tls}{}){}",
            i.connection,
            ms(h),
            i.local_addr
                .zip(i.peer_addr)
                .map(|(l, p)| format!(", {l} -> {p}"))
                .unwrap_or_default(),
            i.previous_closed
                .map(|(n, why)| format!("; #{n} was dropped: {why}"))
                .unwrap_or_default()
        ),
        (false, None) => format!("connection #{}", i.connection),
    };
    let mut extra = format!("; {}", i.protocol);
    if let Some(t) = &i.tls {
        extra.push_str(&format!(
            " over {} ({}, ALPN {})",
            t.version,
            t.cipher,
            t.alpn.as_deref().unwrap_or("none")
        ));
    }
    if i.protocol == Protocol::Http2 && i.new_connection && i.handshake.is_none() {
        extra.push_str("; waited for the connection's handshake");
    }
    if !i.retry_reasons.is_empty() {
        let why: Vec<String> = i.retry_reasons.iter().map(|r| r.to_string()).collect();
        extra.push_str(&format!("; sent again after: {}", why.join(", ")));
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

/// One request's outcome: its head, the bytes of its body, and how it ended.
struct Fetched {
    head: Option<http::response::Parts>,
    got: u64,
    /// The body, when it is kept to be printed later (`--parallel`).
    kept: Option<Bytes>,
    /// The request failed (`head` is `None`) or its body did (after `got` bytes).
    error: Option<synack_http::Error>,
    elapsed: Duration,
}

/// Sends one request; the body goes to stdout as it arrives, or is kept when `keep`.
async fn fetch_one(
    client: &Client,
    req: Request<Bytes>,
    keep: bool,
    no_body: bool,
) -> io::Result<Fetched> {
    let t0 = tokio::time::Instant::now();
    let mut f = Fetched {
        head: None,
        got: 0,
        kept: None,
        error: None,
        elapsed: Duration::ZERO,
    };
    match client.send(req).await {
        Ok(r) => {
            let (head, mut body) = r.into_parts();
            let mut buf = BytesMut::new();
            let stdout = io::stdout();
            while let Some(chunk) = body.chunk().await {
                match chunk {
                    Ok(d) => {
                        f.got += d.len() as u64;
                        if no_body {
                            continue;
                        }
                        if keep {
                            buf.extend_from_slice(&d);
                        } else {
                            // The body goes to stdout as it arrives, never whole in memory.
                            let mut out = stdout.lock();
                            out.write_all(&d)?;
                            out.flush()?;
                        }
                    }
                    Err(e) => {
                        f.error = Some(e);
                        break;
                    }
                }
            }
            f.head = Some(head);
            if keep {
                f.kept = Some(buf.freeze());
            }
        }
        Err(e) => f.error = Some(e),
    }
    f.elapsed = t0.elapsed();
    Ok(f)
}

/// One request as `--json` gives it.
fn json_record(method: &Method, url: &str, f: &Fetched) -> serde_json::Value {
    use serde_json::json;
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let info = f
        .head
        .as_ref()
        .and_then(|h| h.extensions.get::<RequestInfo>());
    let mut r = json!({
        "method": method.as_str(),
        "url": url,
        "status": f.head.as_ref().map(|h| h.status.as_u16()),
        "bytes": f.got,
        "ms": ms(f.elapsed),
        "error": f.error.as_ref().map(|e| explain(method, url, e)),
    });
    if let (Some(i), Some(o)) = (info, r.as_object_mut()) {
        o.insert("connection".into(), json!(i.connection));
        o.insert("new_connection".into(), json!(i.new_connection));
        o.insert("reused".into(), json!(i.reused));
        o.insert(
            "request_on_connection".into(),
            json!(i.request_on_connection),
        );
        o.insert("protocol".into(), json!(i.protocol.to_string()));
        o.insert("handshake_ms".into(), json!(i.handshake.map(ms)));
        o.insert(
            "tls".into(),
            json!(i.tls.as_ref().map(|t| json!({
                "version": t.version.to_string(),
                "cipher": t.cipher.to_string(),
                "alpn": t.alpn,
            }))),
        );
        o.insert("tls_handshake_ms".into(), json!(i.tls_handshake.map(ms)));
        o.insert(
            "retried_after".into(),
            json!(i
                .retry_reasons
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()),
        );
    }
    r
}

/// Prints what `synack get` says of one request (or, with `--json`, adds it to `records`);
/// whether it failed.
fn report_one(
    args: &GetArgs,
    method: &Method,
    url: &str,
    f: Fetched,
    records: &mut Vec<serde_json::Value>,
) -> io::Result<bool> {
    if args.json {
        let failed = f.error.is_some() || f.head.as_ref().is_none_or(|h| !h.status.is_success());
        records.push(json_record(method, url, &f));
        return Ok(failed);
    }
    if let Some(kept) = &f.kept {
        let mut out = io::stdout().lock();
        out.write_all(kept)?;
        out.flush()?;
    }
    let Some(head) = f.head else {
        let e = f.error.expect("a failed request has its error");
        eprintln!("synack get: {}", explain(method, url, &e));
        return Ok(true);
    };
    if args.verbose {
        let info = head.extensions.get::<RequestInfo>().cloned();
        eprintln!(
            "{method} {url} -> {} ({} bytes in {}): {}",
            head.status,
            f.got,
            ms(f.elapsed),
            info.as_ref().map(describe).unwrap_or_default()
        );
    }
    if let Some(e) = f.error {
        eprintln!(
            "synack get: {method} {url}: the body failed after {} bytes: {e}",
            f.got
        );
        return Ok(true);
    }
    if !head.status.is_success() {
        // Said whether or not -v is on: the body alone may not tell.
        if !args.verbose {
            eprintln!("synack get: {method} {url}: {}", head.status);
        }
        return Ok(true);
    }
    Ok(false)
}

async fn fetch_all(
    args: &GetArgs,
    client: &Client,
    records: &mut Vec<serde_json::Value>,
) -> io::Result<usize> {
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "invalid --method"))?;
    let body = Bytes::from(args.data.clone().unwrap_or_default().into_bytes());
    let mut requests = Vec::with_capacity(args.urls.len());
    for url in &args.urls {
        let (uri, _) = Origin::parse(url).map_err(invalid_url)?;
        let mut b = Request::builder().method(method.clone()).uri(uri);
        if args.close {
            b = b.header(CONNECTION, "close");
        }
        let req = b
            .body(body.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
        requests.push(req);
    }
    let mut failed = 0;
    if args.parallel <= 1 {
        for (k, (url, req)) in args.urls.iter().zip(requests).enumerate() {
            if k > 0 {
                if let Some(d) = args.interval {
                    tokio::time::sleep(d).await;
                }
            }
            let f = fetch_one(client, req, false, args.no_body || args.json).await?;
            failed += report_one(args, &method, url, f, records)? as usize;
        }
        return Ok(failed);
    }
    // Up to N at once; each outcome is reported in URL order, as soon as the ones before it
    // have been.
    let permits = Arc::new(tokio::sync::Semaphore::new(args.parallel));
    let mut pending = std::collections::VecDeque::with_capacity(requests.len());
    for (url, req) in args.urls.iter().zip(requests) {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let client = client.clone();
        let no_body = args.no_body || args.json;
        let task = tokio::spawn(async move {
            let f = fetch_one(&client, req, true, no_body).await;
            drop(permit);
            f
        });
        pending.push_back((url, task));
        // What is done, in order, is reported without waiting for the rest.
        while pending.front().is_some_and(|(_, t)| t.is_finished()) {
            let (url, t) = pending.pop_front().expect("a front task");
            let f = t.await.map_err(io::Error::other)??;
            failed += report_one(args, &method, url, f, records)? as usize;
        }
    }
    for (url, t) in pending {
        let f = t.await.map_err(io::Error::other)??;
        failed += report_one(args, &method, url, f, records)? as usize;
    }
    Ok(failed)
}

/// A failed request in one line, naming the request once.
fn explain(method: &Method, url: &str, e: &synack_http::Error) -> String {
    use synack_http::Error;
    match e {
        Error::Connect { source, .. } => {
            let m = source.to_string();
            let hint = if m.contains("CaUsedAsEndEntity") {
                " (the server's certificate is a CA certificate, basicConstraints CA:TRUE, \
                 which is not accepted as a server's: make it with CA:FALSE, or -k)"
            } else if m.contains("not valid for name") {
                " (the certificate names other hosts)"
            } else if m.contains("invalid peer certificate") {
                " (--cacert FILE to trust its issuer, or -k to accept any certificate)"
            } else {
                ""
            };
            format!("{method} {url}: could not connect: {m}{hint}")
        }
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
        if args.alt_svc {
            let stack = if args.transport.kernel {
                None
            } else {
                Some(nc::open_stack(&args.transport.tun_opts(false))?)
            };
            let tcp = match &stack {
                Some(s) => client_with(SynackConnector::new(s), args)?,
                None => client_with(KernelConnector::new(), args)?,
            };
            let failed = super::h3::get_alt_svc(args, tcp, stack.as_ref()).await?;
            if let Some(stack) = stack {
                stack.wait_idle(Duration::from_secs(5)).await;
            }
            if failed > 0 {
                return Err(io::Error::other(format!(
                    "{failed} of {} requests failed",
                    args.urls.len()
                )));
            }
            return Ok(());
        }
        if args.http3 {
            let stack = if args.transport.kernel {
                None
            } else {
                Some(nc::open_stack(&args.transport.tun_opts(false))?)
            };
            let failed = super::h3::get_h3(args, stack.as_ref()).await?;
            if failed > 0 {
                return Err(io::Error::other(format!(
                    "{failed} of {} requests failed",
                    args.urls.len()
                )));
            }
            return Ok(());
        }
        let (client, stack) = if args.transport.kernel {
            (client_with(KernelConnector::new(), args)?, None)
        } else {
            let stack = nc::open_stack(&args.transport.tun_opts(false))?;
            (
                client_with(SynackConnector::new(&stack), args)?,
                Some(stack),
            )
        };
        let mut records = Vec::new();
        let failed = fetch_all(args, &client, &mut records).await?;
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
            if m.h2_connections > 0 || m.tls_handshakes > 0 {
                eprintln!(
                    "synack get: {} HTTP/2 connections, {} streams (at most {} at once), {} \
                     GOAWAYs, {} refused streams; {} TLS handshakes",
                    m.h2_connections,
                    m.h2_streams,
                    m.h2_max_concurrent_streams,
                    m.goaways_received,
                    m.refused_streams,
                    m.tls_handshakes
                );
            }
        }
        drop(client);
        if let Some(stack) = stack {
            // Let the closes finish before the device goes.
            stack.wait_idle(Duration::from_secs(5)).await;
        }
        if args.json {
            let metrics: serde_json::Value =
                serde_json::from_str(&m.to_json()).map_err(io::Error::other)?;
            let doc = serde_json::json!({
                "schema": "synack-get/1",
                "requests": records,
                "metrics": metrics,
            });
            println!("{doc}");
        } else if args.stats {
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

fn client_with(c: impl Connector, args: &GetArgs) -> io::Result<Client> {
    Ok(Client::new(c, args.config()?))
}
