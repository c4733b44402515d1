//! Where the client's connections come from: a [`Connector`] opens a byte stream to an
//! [`Origin`]. Two are provided: [`SynackConnector`] (synack's stack, over the simulated
//! network or a TUN device) and [`KernelConnector`] (the kernel's TCP through `tokio::net`).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use http::Uri;
use synack_stack::net::{Stack, TcpStream};
use synack_tcp::State;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream the client can run HTTP (and TLS) on.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Tells whether the peer has closed (FIN or RST) or sent something unasked on an idle
/// connection: such a connection must not carry another request.
pub type PeerClosedProbe = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a connector hands back: the stream and what is known of it.
pub struct Connected {
    pub io: Box<dyn Io>,
    pub local_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    /// A probe of the idle stream that does not consume it (see [`PeerClosedProbe`]).
    pub peer_closed: Option<PeerClosedProbe>,
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected")
            .field("local_addr", &self.local_addr)
            .field("peer_addr", &self.peer_addr)
            .finish()
    }
}

/// The scheme of an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`: cleartext (HTTP/1.1, or HTTP/2 with prior knowledge).
    Http,
    /// `https`: over TLS (HTTP/1.1 or HTTP/2, chosen by ALPN).
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Its default port (RFC 9110 §4.2.1, §4.2.2).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An origin (RFC 6454): scheme, host and port; the key of the client's pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: Scheme,
    /// The host as written in the URL, without brackets around an IPv6 address.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Origin {
    /// Parses `url` as an absolute `http://` or `https://` URL and gives its origin, or says
    /// what is wrong with it (the message names the URL).
    pub fn parse(url: &str) -> Result<(Uri, Origin), String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url}: not a valid URL ({e})"))?;
        let origin = Origin::check(&uri, url)?;
        Ok((uri, origin))
    }

    /// The origin of an absolute `http://` or `https://` URI (port 80 or 443 when the port
    /// is absent or empty, RFC 3986 §3.2.3 and RFC 9110 §4.2.1-2). A port that is not a
    /// decimal number from 1 to 65535 is an error, never a silent default.
    pub fn from_uri(uri: &Uri) -> Result<Origin, String> {
        Origin::check(uri, &uri.to_string())
    }

    /// [`from_uri`](Self::from_uri), naming the URI as `shown` in errors.
    fn check(uri: &Uri, shown: &str) -> Result<Origin, String> {
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) => {
                return Err(format!(
                    "{shown}: scheme {s:?} is not supported (http and https only)"
                ))
            }
            None => return Err(format!("{shown}: not an absolute http:// or https:// URL")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{shown}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("{shown}: no host"));
        }
        let authority = uri.authority().map_or("", |a| a.as_str());
        let port = match port_text(authority) {
            Ok(None) | Ok(Some("")) => scheme.default_port(),
            Ok(Some(p)) => parse_port(p).map_err(|e| format!("{shown}: {e}"))?,
            Err(e) => return Err(format!("{shown}: {e}")),
        };
        Ok(Origin { scheme, host, port })
    }

    /// The value of the `Host` header (RFC 9110 §7.2).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The host as an IP address, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// The port of an authority (`[userinfo@]host[:port]`, RFC 3986 §3.2) as written: `None`
/// without a `:`, `Some("")` for an empty port.
fn port_text(authority: &str) -> Result<Option<&str>, String> {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = hostport.strip_prefix('[') {
        let Some((_, after)) = rest.split_once(']') else {
            return Err("no closing ']' after the IPv6 address".into());
        };
        return match after {
            "" => Ok(None),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok(Some(p)),
                None => Err(format!("{after:?} after the IPv6 address is not a port")),
            },
        };
    }
    Ok(hostport.rsplit_once(':').map(|(_, p)| p))
}

/// A port: decimal digits, 1 to 65535 (RFC 3986 §3.2.3 allows any digits; TCP has 16 bits,
/// and port 0 cannot be connected to).
fn parse_port(p: &str) -> Result<u16, String> {
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {p:?} is not a number"));
    }
    match p.parse::<u64>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(format!("port {p} is out of range (1 to 65535)")),
    }
}

/// A boxed connect future.
pub type ConnectFuture<'a> = Pin<Box<dyn Future<Output = io::Result<Connected>> + Send + 'a>>;

/// Opens connections for the client's pool. Each successful `connect` is one TCP handshake.
pub trait Connector: Send + Sync + 'static {
    /// Opens a connection to `origin` (the pool applies the connect timeout).
    fn connect<'a>(&'a self, origin: &'a Origin) -> ConnectFuture<'a>;
}

/// Connections over a synack [`Stack`] (a host of a simulated network, or a TUN device). The
/// stack has no resolver: hosts must be IP addresses.
#[derive(Debug, Clone)]
pub struct SynackConnector {
    stack: Stack,
    nodelay: bool,
    fast_open: bool,
}

impl SynackConnector {
    /// Connects from `stack`, with Nagle's algorithm off.
    pub fn new(stack: &Stack) -> SynackConnector {
        SynackConnector {
            stack: stack.clone(),
            nodelay: true,
            fast_open: false,
        }
    }

    /// Opens connections with TCP Fast Open (RFC 7413; see
    /// [`TcpStream::connect_fast_open`]): once a server has given this stack a cookie, each
    /// new connection to it returns at once and its SYN carries the request, so a request on
    /// a new connection costs one round trip, not two.
    pub fn fast_open(mut self, on: bool) -> Self {
        self.fast_open = on;
        self
    }

    /// Leaves Nagle's algorithm on (`false`) or turns it off (`true`, the default).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
}

impl Connector for SynackConnector {
    fn connect<'a>(&'a self, origin: &'a Origin) -> ConnectFuture<'a> {
        Box::pin(async move {
            let ip = origin.ip().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: synack's stack has no resolver; use an IP address",
                        origin.host
                    ),
                )
            })?;
            let addr = SocketAddr::new(ip, origin.port);
            let s = if self.fast_open {
                TcpStream::connect_fast_open(&self.stack, addr).await?
            } else {
                TcpStream::connect(&self.stack, addr).await?
            };
            s.set_nodelay(self.nodelay)?;
            let (stack, id) = (s.stack().clone(), s.id());
            let probe: PeerClosedProbe = Arc::new(move || {
                stack.with_interface(|i| {
                    i.tcp()
                        .conn(id)
                        .is_none_or(|c| c.state() != State::Established || c.error().is_some())
                })
            });
            Ok(Connected {
                local_addr: s.local_addr().ok(),
                peer_addr: s.peer_addr().ok(),
                io: Box::new(s),
                peer_closed: Some(probe),
            })
        })
    }
}

/// Connections over the kernel's TCP (`tokio::net::TcpStream`), resolving names with the
/// system's resolver.
#[derive(Debug, Clone, Copy)]
pub struct KernelConnector {
    nodelay: bool,
}

impl Default for KernelConnector {
    fn default() -> Self {
        KernelConnector { nodelay: true }
    }
}

impl KernelConnector {
    /// With Nagle's algorithm off.
    pub fn new() -> KernelConnector {
        KernelConnector::default()
    }

    /// Leaves Nagle's algorithm on (`false`) or turns it off (`true`, the default).
    pub fn nodelay(mut self, on: bool) -> Self {
        self.nodelay = on;
        self
    }
}

impl Connector for KernelConnector {
    fn connect<'a>(&'a self, origin: &'a Origin) -> ConnectFuture<'a> {
        Box::pin(async move {
            let s = match origin.ip() {
                Some(ip) => {
                    tokio::net::TcpStream::connect(SocketAddr::new(ip, origin.port)).await?
                }
                None => tokio::net::TcpStream::connect((origin.host.as_str(), origin.port)).await?,
            };
            s.set_nodelay(self.nodelay)?;
            let (local, peer) = (s.local_addr().ok(), s.peer_addr().ok());
            // A second descriptor of the same socket, to peek at it while hyper owns the
            // stream: a read of 0 bytes is the peer's FIN.
            let std = s.into_std()?;
            let peek = std.try_clone()?;
            let s = tokio::net::TcpStream::from_std(std)?;
            let probe: PeerClosedProbe = Arc::new(move || {
                let mut b = [0u8; 1];
                !matches!(peek.peek(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            });
            Ok(Connected {
                local_addr: local,
                peer_addr: peer,
                io: Box::new(s),
                peer_closed: Some(probe),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> Result<Origin, String> {
        Origin::parse(url).map(|(_, o)| o)
    }

    #[test]
    fn ports_are_parsed_or_refused() {
        assert_eq!(origin("http://127.0.0.1/").unwrap().port, 80);
        assert_eq!(origin("http://127.0.0.1:8080/x").unwrap().port, 8080);
        assert_eq!(origin("http://127.0.0.1:65535/").unwrap().port, 65535);
        assert_eq!(origin("http://127.0.0.1:00080/").unwrap().port, 80);
        // RFC 3986 §3.2.3: an empty port is the scheme's default.
        assert_eq!(origin("http://h:/").unwrap().port, 80);
        assert_eq!(origin("http://h:").unwrap().port, 80);
        let o = origin("http://[::1]:8080/").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 8080));
        assert_eq!(origin("http://[::1]/").unwrap().port, 80);
        assert_eq!(origin("http://[::1]:/").unwrap().port, 80);
        assert_eq!(origin("http://user@h:81/").unwrap().port, 81);
        let o = origin("https://Example.COM/x").unwrap();
        assert_eq!(
            (o.scheme, o.host.as_str(), o.port),
            (Scheme::Https, "example.com", 443)
        );
        assert_eq!(o.host_header(), "example.com");
        assert_eq!(o.to_string(), "https://example.com:443");
        let o = origin("https://[::1]:8443/").unwrap();
        assert_eq!((o.port, o.host_header()), (8443, "[::1]:8443".to_owned()));
        assert_ne!(
            origin("http://h/").unwrap(),
            origin("https://h:80/").unwrap()
        );
    }

    fn refused(url: &str) -> String {
        let e = origin(url).expect_err(url);
        assert!(e.starts_with(&format!("{url}: ")), "{e:?} names {url}");
        e
    }

    #[test]
    fn invalid_ports_are_errors_naming_the_url() {
        for (url, why) in [
            (
                "http://127.0.0.1:99999/",
                "port 99999 is out of range (1 to 65535)",
            ),
            (
                "http://127.0.0.1:65536/",
                "port 65536 is out of range (1 to 65535)",
            ),
            ("http://127.0.0.1:0/", "port 0 is out of range (1 to 65535)"),
            (
                "http://127.0.0.1:99999999999999999999999/",
                "out of range (1 to 65535)",
            ),
            ("http://127.0.0.1:80abc/", "port \"80abc\" is not a number"),
            ("http://127.0.0.1:-1/", "port \"-1\" is not a number"),
            ("http://[::1]:x/", "port \"x\" is not a number"),
        ] {
            let e = refused(url);
            assert!(e.contains(why), "{url}: {e}");
        }
        assert!(refused("ftp://h/").contains("scheme \"ftp\" is not supported"));
        let e = refused("/x");
        assert!(e.contains("not an absolute http:// or https:// URL"), "{e}");
        assert!(refused("http://exa mple/").contains("not a valid URL"));
    }
}
