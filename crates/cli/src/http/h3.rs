//! HTTP/3 for `synack serve --http3` and `synack get --http3`: QUIC (quinn) on UDP, over the
//! kernel's sockets or synack's stack on a TUN device, with the certificates of HTTPS.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Uri};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use synack_http::h3::{self, quinn, AltSvcClient, H3Client, H3Config, H3ServerStats, Via};
use synack_http::routes::Routes;
use synack_http::tls::{load_pem, SelfSigned, TlsServerConfig};
use synack_http::{CertVerification, Client, Origin, RequestInfo, TlsClientConfig};
use synack_stack::net::{nc, Stack, UdpSocket};

use super::get::GetArgs;
use super::ms;
use super::serve::ServeArgs;

/// How long clients may remember the `Alt-Svc` advertisement (a day, as is common).
pub(super) const ALT_SVC_MAX_AGE: u64 = 86_400;

/// The TCP side's TLS (if asked for) and QUIC's server configuration, from one certificate:
/// `--cert/--key`, else one self-signed certificate for `ip` made here (its fingerprint in
/// the lines returned), shared by HTTPS and HTTP/3.
pub(super) fn tls_and_quic(
    args: &ServeArgs,
    ip: IpAddr,
) -> io::Result<(Option<TlsServerConfig>, Vec<String>, quinn::ServerConfig)> {
    let (chain, key, lines): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, _) =
        match (&args.cert, &args.key) {
            (Some(c), Some(k)) => {
                let (chain, key) = load_pem(c, k)?;
                (
                    chain,
                    key,
                    vec![format!("synack serve: TLS with {}", c.display())],
                )
            }
            _ => {
                let c = SelfSigned::for_addr(ip)?;
                let lines = vec![
                    format!(
                        "synack serve: TLS with a self-signed certificate for {}",
                        c.names.join(", ")
                    ),
                    format!("synack serve: SHA-256 fingerprint {}", c.fingerprint()),
                ];
                (
                    vec![c.cert.clone()],
                    PrivateKeyDer::Pkcs8(c.key.clone_key()),
                    lines,
                )
            }
        };
    let tcp_tls = if args.tls || args.cert.is_some() {
        Some(TlsServerConfig::new(chain.clone(), key.clone_key())?)
    } else {
        None
    };
    let idle = if args.keepalive_timeout.is_zero() {
        Duration::from_secs(30)
    } else {
        args.keepalive_timeout
    };
    let cfg = H3Config {
        idle_timeout: idle,
        max_concurrent_streams: args.http2_max_concurrent_streams,
        early_data: args.early_data,
    };
    Ok((tcp_tls, lines, h3::server_config(chain, key, &cfg)?))
}

/// An HTTP/3 server running beside the TCP one.
pub(super) struct H3Server {
    endpoint: quinn::Endpoint,
    stats: Arc<H3ServerStats>,
}

impl H3Server {
    /// Serves `routes` on a kernel UDP socket bound to `addr`.
    pub(super) fn kernel(
        addr: SocketAddr,
        config: quinn::ServerConfig,
        routes: Routes,
        early: bool,
    ) -> io::Result<H3Server> {
        let ep = h3::kernel_endpoint(addr, Some(config)).map_err(|e| nc::naming(addr, e))?;
        Ok(Self::start(ep, routes, early))
    }

    /// Serves `routes` on synack's UDP at `addr`.
    pub(super) async fn synack(
        stack: &Stack,
        addr: SocketAddr,
        config: quinn::ServerConfig,
        routes: Routes,
        early: bool,
    ) -> io::Result<H3Server> {
        let sock = UdpSocket::bind(stack, addr)
            .await
            .map_err(|e| nc::naming(addr, e))?;
        let (ep, _) = h3::synack_endpoint(sock, Some(config))?;
        Ok(Self::start(ep, routes, early))
    }

    fn start(ep: quinn::Endpoint, routes: Routes, early: bool) -> H3Server {
        let stats = Arc::new(H3ServerStats::default());
        tokio::spawn(h3::serve_h3(ep.clone(), routes, early, stats.clone()));
        H3Server {
            endpoint: ep,
            stats,
        }
    }

    pub(super) fn line(&self) -> String {
        format!(
            "synack serve: HTTP/3 on udp://{} (QUIC, ALPN h3)",
            self.endpoint
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string())
        )
    }

    /// Closes every connection (H3_NO_ERROR) and says what was served.
    pub(super) async fn close(self, verbose: bool) {
        self.endpoint.close(quinn::VarInt::from_u32(0x100), b"");
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
        if verbose {
            let s = &self.stats;
            eprintln!(
                "synack serve: HTTP/3: {} QUIC connections ({} with 0-RTT), {} requests ({} in \
                 0-RTT, {} answered 425)",
                s.connections.load(Ordering::Relaxed),
                s.zero_rtt.load(Ordering::Relaxed),
                s.requests.load(Ordering::Relaxed),
                s.early_requests.load(Ordering::Relaxed),
                s.too_early.load(Ordering::Relaxed)
            );
        }
    }
}

fn invalid(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, m)
}

/// The address, TLS name and path of an `https://` URL.
async fn target(url: &str, over_tun: bool) -> io::Result<(SocketAddr, String, String)> {
    let uri: Uri = url
        .parse()
        .map_err(|e| invalid(format!("invalid URL {url}: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid(format!("{url}: HTTP/3 needs an https:// URL")));
    }
    let host = uri
        .host()
        .ok_or_else(|| invalid(format!("{url}: no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let addr = match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) if over_tun => {
            return Err(invalid(format!(
                "{url}: over TUN the host must be an IP address"
            )))
        }
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await?
            .next()
            .ok_or_else(|| invalid(format!("{url}: {host} has no address")))?,
    };
    Ok((addr, host, path))
}

/// `synack get --http3`: every URL over HTTP/3, as streams of one QUIC connection (with
/// `--close`, a new connection for each URL: with `--early-data` each one after the first
/// resumes the session before it and sends its request in 0-RTT, the return visit).
pub(super) async fn get_h3(args: &GetArgs, stack: Option<&Stack>) -> io::Result<usize> {
    let verification = if args.insecure {
        CertVerification::InsecureAcceptAnyCertificate
    } else if let Some(f) = &args.cacert {
        CertVerification::ca_file(f)?
    } else {
        CertVerification::SystemRoots
    };
    let config = h3::client_config(&TlsClientConfig { verification }, args.early_data)?;
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| invalid("invalid --method".into()))?;
    let body = Bytes::from(args.data.clone().unwrap_or_default().into_bytes());
    let mut failed = 0;
    let mut client: Option<H3Client> = None;
    let mut conns_before = 0;
    // Totals over the clients made (one per URL with --close).
    let mut totals = [0u64; 5];
    let add = |t: &mut [u64; 5], c: &H3Client| {
        let s = c.stats();
        for (slot, v) in t.iter_mut().zip([
            &s.requests,
            &s.connections,
            &s.zero_rtt_attempted,
            &s.zero_rtt_accepted,
            &s.retried,
        ]) {
            *slot += v.load(Ordering::Relaxed);
        }
    };
    for url in &args.urls {
        let (addr, host, path) = target(url, stack.is_some()).await?;
        if client.is_none() || args.close {
            if let Some(old) = client.take() {
                add(&mut totals, &old);
                old.close().await;
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), old.endpoint().wait_idle()).await;
            }
            let local: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("valid")
            } else {
                "[::]:0".parse().expect("valid")
            };
            let ep = match stack {
                Some(s) => h3::synack_endpoint(UdpSocket::bind(s, local).await?, None)?.0,
                None => h3::kernel_endpoint(local, None)?,
            };
            client = Some(H3Client::new(ep, config.clone(), args.early_data));
            conns_before = 0;
        }
        let c = client.as_ref().expect("made above");
        let t0 = tokio::time::Instant::now();
        let r = c
            .request(method.clone(), addr, &host, &path, body.clone())
            .await;
        let elapsed = t0.elapsed();
        match r {
            Ok(res) => {
                if !args.no_body {
                    let mut out = io::stdout().lock();
                    out.write_all(&res.body)?;
                    out.flush()?;
                }
                if args.verbose {
                    let opened = c.stats().connections.load(Ordering::Relaxed);
                    let how = if opened > conns_before {
                        "new QUIC connection (handshake: transport and TLS 1.3 together)"
                    } else {
                        "reused QUIC connection (a new stream)"
                    };
                    conns_before = opened;
                    let early = if res.early { ", sent in 0-RTT" } else { "" };
                    eprintln!(
                        "{method} {url} -> {} ({} bytes in {}): {how}; HTTP/3{early}",
                        res.status,
                        res.body.len(),
                        ms(elapsed)
                    );
                }
                if !res.status.is_success() {
                    if !args.verbose {
                        eprintln!("synack get: {method} {url}: {}", res.status);
                    }
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("synack get: {method} {url}: {e}");
                failed += 1;
            }
        }
    }
    if let Some(c) = client {
        add(&mut totals, &c);
        if args.verbose {
            let [requests, conns, tried, accepted, retried] = totals;
            eprintln!(
                "synack get: HTTP/3: {requests} requests on {conns} QUIC connections ({tried} \
                 tried 0-RTT, {accepted} accepted, {retried} retried)"
            );
        }
        c.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), c.endpoint().wait_idle()).await;
    }
    Ok(failed)
}

/// `synack get --alt-svc`: every URL in turn through an [`AltSvcClient`]: over TCP until an
/// origin's response advertises HTTP/3, then over HTTP/3.
pub(super) async fn get_alt_svc(
    args: &GetArgs,
    tcp: Client,
    stack: Option<&Stack>,
) -> io::Result<usize> {
    let verification = if args.insecure {
        CertVerification::InsecureAcceptAnyCertificate
    } else if let Some(f) = &args.cacert {
        CertVerification::ca_file(f)?
    } else {
        CertVerification::SystemRoots
    };
    let config = h3::client_config(&TlsClientConfig { verification }, false)?;
    // One endpoint for every origin, on the address family of the first URL.
    let v6 = args
        .urls
        .first()
        .and_then(|u| Origin::parse(u).ok())
        .is_some_and(|(_, o)| o.host.contains(':'));
    let local: SocketAddr = if v6 { "[::]:0" } else { "0.0.0.0:0" }
        .parse()
        .expect("valid");
    let ep = match stack {
        Some(s) => h3::synack_endpoint(UdpSocket::bind(s, local).await?, None)?.0,
        None => h3::kernel_endpoint(local, None)?,
    };
    let client = AltSvcClient::new(tcp, H3Client::new(ep, config, false), args.connect_timeout);
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| invalid("invalid --method".into()))?;
    let body = Bytes::from(args.data.clone().unwrap_or_default().into_bytes());
    let mut failed = 0;
    for url in &args.urls {
        let (uri, _) = Origin::parse(url).map_err(|e| invalid(format!("invalid URL {e}")))?;
        let req = http::Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(body.clone())
            .map_err(|e| invalid(format!("{url}: {e}")))?;
        let t0 = tokio::time::Instant::now();
        match client.request(req).await {
            Ok((res, via)) => {
                if !args.no_body {
                    let mut out = io::stdout().lock();
                    out.write_all(res.body())?;
                    out.flush()?;
                }
                if args.verbose {
                    let how = match via {
                        Via::Tcp => {
                            let proto = res
                                .extensions()
                                .get::<RequestInfo>()
                                .map_or_else(|| "?".into(), |i| i.protocol.to_string());
                            let alt = res
                                .headers()
                                .get(http::header::ALT_SVC)
                                .and_then(|v| v.to_str().ok())
                                .map_or_else(String::new, |v| format!(", Alt-Svc: {v}"));
                            format!("over TCP ({proto}{alt})")
                        }
                        Via::Http3 { port, .. } => {
                            format!("over HTTP/3 on UDP port {port} (from Alt-Svc)")
                        }
                    };
                    eprintln!(
                        "{method} {url} -> {} ({} bytes in {}): {how}",
                        res.status(),
                        res.body().len(),
                        ms(t0.elapsed())
                    );
                }
                if !res.status().is_success() {
                    if !args.verbose {
                        eprintln!("synack get: {method} {url}: {}", res.status());
                    }
                    failed += 1;
                }
            }
            Err(e) => {
                eprintln!("synack get: {method} {url}: {e}");
                failed += 1;
            }
        }
    }
    if args.verbose {
        let s = client.stats();
        let h = client.h3().stats();
        let m = client.tcp().metrics();
        eprintln!(
            "synack get: Alt-Svc: {} requests over TCP on {} connections, {} over HTTP/3 on {} \
             QUIC connections ({} alternatives learned, {} broken, {} fell back to TCP)",
            s.over_tcp.load(Ordering::Relaxed),
            m.connections_opened,
            s.over_h3.load(Ordering::Relaxed),
            h.connections.load(Ordering::Relaxed),
            s.learned.load(Ordering::Relaxed),
            s.broken.load(Ordering::Relaxed),
            s.fell_back.load(Ordering::Relaxed),
        );
    }
    client.h3().close().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.h3().endpoint().wait_idle()).await;
    Ok(failed)
}
