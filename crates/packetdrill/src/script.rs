//! A runner for the subset of packetdrill's script language that our scripts
//! (`tests/packetdrill/*.pkt`) use, driving the shared object's function table as packetdrill
//! does: socket calls on a second thread (a call marked blocking, `T...E`, may block while the
//! script goes on), inbound packets through `netdev_send`, outbound packets from
//! `netdev_receive`, time through `usleep` and `gettimeofday`.
//!
//! # The subset
//! - Times: `0.100` (absolute), `+.1` (relative to the previous event; consecutive inbound
//!   packets are anchored to each other, as in packetdrill), `*` (any time), `T...E` on a
//!   system call (blocking; `E` is when it must return, on the same base as `T`), `T~E` (a range).
//! - Calls: `socket`, `bind`, `listen`, `accept`, `connect`, `read`, `recv`, `write`, `send`,
//!   `close`, `shutdown`, `setsockopt`, `getsockopt`, `fcntl`, `ioctl` (FIONREAD), `poll`;
//!   results `= N` or `= -1 ERRNO (text)`. `...` stands for addresses (`bind` uses the local
//!   address and port 8080, `connect` the remote address and port 8080) and for buffers (zeros,
//!   as packetdrill writes).
//! - Packets: `< FLAGS seq:end(len) [ack N] [win N] [<options>]` injected, `> ...` expected.
//!   Flags `S F R P . E W U`; options `nop`, `eol`, `mss N`, `wscale N`, `sackOK`,
//!   `TS val N ecr N`, `sack L:R ...`, or `<...>` (options not checked).
//! - Lines `--tolerance_usecs=N` set the timing tolerance (default 4000 µs, as packetdrill).
//!
//! # What is checked on an outbound packet
//! Addresses and ports (the socket under test; other packets are skipped, as packetdrill does),
//! every flag, the sequence number (relative to our ISN, as packetdrill maps it), the ACK number
//! when the ACK flag is set, the window when the script gives `win`, the payload length and
//! bytes (zeros), the options in order (kinds, lengths and values), and the time (± tolerance).
//! For timestamps the TS val is not compared (packetdrill only does with `--tcp_ts_tick_usecs`)
//! but remembered, so that an inbound `ecr` naming it is mapped to the live value; the TS ecr
//! *is* compared — inbound TS vals are injected as written, so the stack must echo exactly
//! them (packetdrill does not check this; we do).
//!
//! Sequence numbers are packetdrill's: the remote side's as written, ours relative to the ISN
//! of our SYN or SYN-ACK as written in the script (usually 0).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::sync::Arc;

use libc::{c_int, c_void, socklen_t};
use synack_wire::{IpProtocol, IpRepr, TcpFlags};

use crate::ffi::{self, PacketdrillInterface};
use crate::shim::Shim;
use crate::sockaddr;

/// The addresses and settings a script runs with (packetdrill's defaults).
#[derive(Debug, Clone)]
pub struct Options {
    pub local_ip: IpAddr,
    pub remote_ip: IpAddr,
    /// `bind(..., ...)` binds here; inbound SYNs go here.
    pub bind_port: u16,
    /// `connect(..., ...)` connects here.
    pub connect_port: u16,
    /// The remote port of the first passive connection (the next ones count up).
    pub remote_port: u16,
    pub tolerance_usecs: i64,
    /// Flags for `packetdrill_interface_init`; `local_ip` is added from `local_ip`.
    pub so_flags: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            local_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
            remote_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            bind_port: 8080,
            connect_port: 8080,
            remote_port: 48123,
            tolerance_usecs: 4000,
            so_flags: String::new(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub events: usize,
    pub packets_in: usize,
    pub packets_out: usize,
    pub calls: usize,
}

// -------------------------------------------------------------------------------------------
// Parsing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeKind {
    Abs,
    Rel,
    Any,
}

#[derive(Debug, Clone, Copy)]
struct TimeSpec {
    kind: TimeKind,
    usecs: i64,
    /// `T...E`: the end of a blocking call.
    end: Option<i64>,
    /// `T~E`: the end of a range.
    range_end: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Ellipsis,
    Int(i64),
    Sym(String),
    Or(Vec<Expr>),
    List(Vec<Expr>),
    Struct(Vec<(String, Expr)>),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Opt {
    Nop,
    Eol,
    Mss(u16),
    Wscale(u8),
    SackOk,
    Ts(u32, u32),
    Sack(Vec<(u32, u32)>),
    /// TCP Fast Open: `FO`/`FOEXP` (a request) or `FO hex`/`FOEXP hex` (a cookie).
    FastOpen {
        exp: bool,
        cookie: Vec<u8>,
    },
}

/// Hexadecimal bytes (`abcd1234`).
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("hex {s:?}: {e}")))
        .collect()
}

/// A string argument's bytes, with C escapes `\xNN`, `\n`, `\\`, `\"`.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 4 <= b.len() => {
                    let h = std::str::from_utf8(&b[i + 2..i + 4]).map_err(|e| e.to_string())?;
                    out.push(u8::from_str_radix(h, 16).map_err(|e| format!("\\x{h}: {e}"))?);
                    i += 4;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                }
                c => {
                    out.push(c);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct ScriptPacket {
    inbound: bool,
    /// The IP ECN field written (`[ect0]` ...), checked outbound and set inbound.
    ip_ecn: Option<u8>,
    flags: u8,
    seq: u32,
    len: u32,
    ack: Option<u32>,
    win: Option<u16>,
    /// `None`: `<...>`, not checked.
    opts: Option<Vec<Opt>>,
}

#[derive(Debug, Clone)]
struct Call {
    name: String,
    args: Vec<Expr>,
    ret: i64,
    errno: Option<String>,
}

#[derive(Debug, Clone)]
enum Action {
    Packet(ScriptPacket),
    Call(Call),
}

#[derive(Debug, Clone)]
struct Event {
    line: usize,
    time: TimeSpec,
    action: Action,
}

// packetdrill's flag letters map to the wire crate's control bits.
const FIN: u8 = TcpFlags::FIN.0;
const SYN: u8 = TcpFlags::SYN.0;
const RST: u8 = TcpFlags::RST.0;
const PSH: u8 = TcpFlags::PSH.0;
const ACK: u8 = TcpFlags::ACK.0;
const URG: u8 = TcpFlags::URG.0;
const ECE: u8 = TcpFlags::ECE.0;
const CWR: u8 = TcpFlags::CWR.0;

/// Seconds with up to six decimals (`0.100`, `.1`, `2`) in microseconds.
fn parse_secs(s: &str) -> Result<i64, String> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(format!("bad time {s:?}"));
    }
    let i: i64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|e| format!("bad time {s:?}: {e}"))?
    };
    let mut f = frac.to_string();
    while f.len() < 6 {
        f.push('0');
    }
    let f: i64 = f.parse().map_err(|e| format!("bad time {s:?}: {e}"))?;
    i.checked_mul(1_000_000)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(|| format!("time {s:?} too large"))
}

/// Split off the leading time; returns it and the rest of the line.
fn parse_time(line: &str) -> Result<(TimeSpec, &str), String> {
    let line = line.trim_start();
    let end = line.find(char::is_whitespace).unwrap_or(line.len());
    let (tok, rest) = line.split_at(end);
    let mut spec = TimeSpec {
        kind: TimeKind::Abs,
        usecs: 0,
        end: None,
        range_end: None,
    };
    if tok == "*" {
        spec.kind = TimeKind::Any;
        return Ok((spec, rest));
    }
    let (start, tail) = if let Some(i) = tok.find("...") {
        (&tok[..i], Some(("...", &tok[i + 3..])))
    } else if let Some(i) = tok.find('~') {
        (&tok[..i], Some(("~", &tok[i + 1..])))
    } else {
        (tok, None)
    };
    let start = match start.strip_prefix('+') {
        Some(s) => {
            spec.kind = TimeKind::Rel;
            s
        }
        None => start,
    };
    spec.usecs = parse_secs(start)?;
    if let Some((sep, e)) = tail {
        let v = parse_secs(e.strip_prefix('+').unwrap_or(e))?;
        if sep == "..." {
            spec.end = Some(v);
        } else {
            spec.range_end = Some(v);
        }
    }
    Ok((spec, rest))
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s.as_bytes()[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "expected '{}' at {:?}",
                c as char,
                &self.s[self.i.min(self.s.len())..]
            ))
        }
    }

    fn ident(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'_' {
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > start).then(|| &self.s[start..self.i])
    }

    fn number(&mut self) -> Result<i64, String> {
        self.ws();
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() {
                self.i += 1;
            } else {
                break;
            }
        }
        let t = &self.s[start..self.i];
        let (neg, digits) = match t.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, t),
        };
        let v = match digits
            .strip_prefix("0x")
            .or_else(|| digits.strip_prefix("0X"))
        {
            Some(h) => i64::from_str_radix(h, 16),
            None => digits.parse(),
        }
        .map_err(|e| format!("bad number {t:?}: {e}"))?;
        Ok(if neg { -v } else { v })
    }

    fn term(&mut self) -> Result<Expr, String> {
        self.ws();
        if self.s[self.i..].starts_with("...") {
            self.i += 3;
            return Ok(Expr::Ellipsis);
        }
        match self.peek() {
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.expr()?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Expr::List(items))
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        let name = self.ident().ok_or("expected a field name")?.to_string();
                        self.expect(b'=')?;
                        fields.push((name, self.expr()?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Expr::Struct(fields))
            }
            Some(b'"') => {
                self.i += 1;
                let start = self.i;
                while self.peek().is_some_and(|c| c != b'"') {
                    self.i += 1;
                }
                let s = self.s[start..self.i].to_string();
                self.expect(b'"')?;
                Ok(Expr::Str(s))
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => Ok(Expr::Int(self.number()?)),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                Ok(Expr::Sym(self.ident().unwrap_or_default().to_string()))
            }
            _ => Err(format!("unexpected {:?}", &self.s[self.i..])),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let first = self.term()?;
        let mut terms = vec![first];
        while self.eat(b'|') {
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(Expr::Int(0))
        } else {
            Expr::Or(terms)
        })
    }
}

fn parse_call(s: &str) -> Result<Call, String> {
    let mut c = Cursor { s, i: 0 };
    let name = c.ident().ok_or("expected a system call")?.to_string();
    c.expect(b'(')?;
    let mut args = Vec::new();
    if !c.eat(b')') {
        loop {
            args.push(c.expr()?);
            if c.eat(b')') {
                break;
            }
            c.expect(b',')?;
        }
    }
    c.expect(b'=')?;
    let ret = c.number()?;
    let errno = if ret == -1 {
        Some(
            c.ident()
                .ok_or("expected an errno name after -1")?
                .to_string(),
        )
    } else {
        None
    };
    // The rest is a comment: `(Operation now in progress)`, `(flags O_RDWR)`.
    Ok(Call {
        name,
        args,
        ret,
        errno,
    })
}

fn parse_u32(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .map_err(|e| format!("bad number {s:?}: {e}"))
}

fn parse_options(s: &str) -> Result<Option<Vec<Opt>>, String> {
    let s = s.trim();
    if s == "..." {
        return Ok(None);
    }
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let words: Vec<&str> = item.split_whitespace().collect();
        let o = match words.as_slice() {
            ["nop"] => Opt::Nop,
            ["eol"] => Opt::Eol,
            ["sackOK"] => Opt::SackOk,
            ["mss", n] => Opt::Mss(n.parse().map_err(|e| format!("mss {n:?}: {e}"))?),
            ["wscale", n] => Opt::Wscale(n.parse().map_err(|e| format!("wscale {n:?}: {e}"))?),
            ["TS", "val", v, "ecr", e] => Opt::Ts(parse_u32(v)?, parse_u32(e)?),
            ["FO"] | ["FOEXP"] => Opt::FastOpen {
                exp: words[0] == "FOEXP",
                cookie: Vec::new(),
            },
            ["FO", h] | ["FOEXP", h] => Opt::FastOpen {
                exp: words[0] == "FOEXP",
                cookie: parse_hex(h)?,
            },
            ["sack", blocks @ ..] if !blocks.is_empty() => {
                let mut bs = Vec::new();
                for b in blocks {
                    let (l, r) = b.split_once(':').ok_or(format!("sack block {b:?}"))?;
                    bs.push((parse_u32(l)?, parse_u32(r)?));
                }
                Opt::Sack(bs)
            }
            _ => return Err(format!("unsupported option {item:?}")),
        };
        out.push(o);
    }
    Ok(Some(out))
}

fn parse_packet(inbound: bool, s: &str) -> Result<ScriptPacket, String> {
    let (head, opts) = match s.find('<') {
        Some(i) => {
            let j = s
                .rfind('>')
                .filter(|&j| j > i)
                .ok_or("unterminated options")?;
            (&s[..i], Some(&s[i + 1..j]))
        }
        None => (s, None),
    };
    let mut toks = head.split_whitespace().peekable();
    // packetdrill's IP ECN marks: `[noecn]`, `[ect0]`, `[ect1]`, `[ce]`.
    let ip_ecn = match toks.peek().copied() {
        Some(m @ ("[noecn]" | "[ect0]" | "[ect1]" | "[ce]")) => {
            toks.next();
            Some(match m {
                "[noecn]" => 0u8,
                "[ect1]" => 1,
                "[ect0]" => 2,
                _ => 3,
            })
        }
        _ => None,
    };
    let flag_tok = toks.next().ok_or("expected flags")?;
    let mut flags = 0u8;
    for c in flag_tok.chars() {
        flags |= match c {
            'S' => SYN,
            'F' => FIN,
            'R' => RST,
            'P' => PSH,
            '.' => ACK,
            'E' => ECE,
            'W' => CWR,
            'U' => URG,
            _ => return Err(format!("unknown flag {c:?}")),
        };
    }
    let range = toks.next().ok_or("expected seq:end(len)")?;
    let (seq, rest) = range
        .split_once(':')
        .ok_or(format!("bad range {range:?}"))?;
    let (end, len) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once('('))
        .ok_or(format!("bad range {range:?}"))?;
    let (seq, end, len) = (parse_u32(seq)?, parse_u32(end)?, parse_u32(len)?);
    if end.wrapping_sub(seq) != len {
        return Err(format!("range {range:?}: end - start != length"));
    }
    let mut p = ScriptPacket {
        inbound,
        ip_ecn,
        flags,
        seq,
        len,
        ack: None,
        win: None,
        opts: None,
    };
    if opts.is_none() {
        p.opts = Some(Vec::new());
    } else if let Some(o) = opts {
        p.opts = parse_options(o)?;
    }
    while let Some(k) = toks.next() {
        let v = toks.next().ok_or(format!("{k} without a value"))?;
        match k {
            "ack" => p.ack = Some(parse_u32(v)?),
            "win" => p.win = Some(v.parse().map_err(|e| format!("win {v:?}: {e}"))?),
            _ => return Err(format!("unsupported packet field {k:?}")),
        }
    }
    if inbound && p.win.is_none() {
        return Err("an inbound packet needs a window (win N)".into());
    }
    Ok(p)
}

/// Strip `//` and single-line `/* */` comments.
fn strip_comment(line: &str) -> String {
    let mut s = line.to_string();
    while let Some(i) = s.find("/*") {
        match s[i..].find("*/") {
            Some(j) => s.replace_range(i..i + j + 2, " "),
            None => {
                s.truncate(i);
                break;
            }
        }
    }
    if let Some(i) = s.find("//") {
        s.truncate(i);
    }
    s
}

/// Parse a script into its option lines (`--key=value`) and events.
/// A script's `--key=value` settings and its events.
type Parsed = (Vec<(String, String)>, Vec<Event>);

fn parse_script(text: &str) -> Result<Parsed, String> {
    let mut settings = Vec::new();
    let mut events = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let (lineno, stmt) = match pending.take() {
            Some((l, mut acc)) => {
                acc.push(' ');
                acc.push_str(line.trim());
                (l, acc)
            }
            None => (n + 1, line.trim().to_string()),
        };
        if stmt.is_empty() {
            continue;
        }
        let depth: i32 = stmt
            .bytes()
            .map(|b| match b {
                b'(' | b'[' | b'{' => 1,
                b')' | b']' | b'}' => -1,
                _ => 0,
            })
            .sum();
        if depth > 0 {
            pending = Some((lineno, stmt));
            continue;
        }
        let err = |e: String| format!("line {lineno}: {e}");
        if let Some(opt) = stmt.strip_prefix("--") {
            let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
            settings.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
            continue;
        }
        if stmt.starts_with('`') {
            return Err(err("shell commands are not supported".into()));
        }
        let (time, rest) = parse_time(&stmt).map_err(err)?;
        let rest = rest.trim();
        let action = if let Some(p) = rest.strip_prefix('<') {
            Action::Packet(parse_packet(true, p).map_err(err)?)
        } else if let Some(p) = rest.strip_prefix('>') {
            Action::Packet(parse_packet(false, p).map_err(err)?)
        } else {
            Action::Call(parse_call(rest).map_err(err)?)
        };
        if time.end.is_some() && !matches!(action, Action::Call(_)) {
            return Err(err("only system calls can block (T...E)".into()));
        }
        events.push(Event {
            line: lineno,
            time,
            action,
        });
    }
    if let Some((l, _)) = pending {
        return Err(format!("line {l}: unbalanced brackets"));
    }
    Ok((settings, events))
}

/// The symbols scripts use.
fn symbol(name: &str) -> Option<i64> {
    use libc::*;
    let v: c_int = match name {
        "AF_INET" => AF_INET,
        "AF_INET6" => AF_INET6,
        "SOCK_STREAM" => SOCK_STREAM,
        "SOCK_NONBLOCK" => SOCK_NONBLOCK,
        "IPPROTO_TCP" => IPPROTO_TCP,
        "IPPROTO_IP" => IPPROTO_IP,
        "IPPROTO_IPV6" => IPPROTO_IPV6,
        "SOL_SOCKET" => SOL_SOCKET,
        "SO_REUSEADDR" => SO_REUSEADDR,
        "SO_REUSEPORT" => SO_REUSEPORT,
        "SO_KEEPALIVE" => SO_KEEPALIVE,
        "SO_RCVBUF" => SO_RCVBUF,
        "SO_SNDBUF" => SO_SNDBUF,
        "SO_MAX_PACING_RATE" => SO_MAX_PACING_RATE,
        "SO_LINGER" => SO_LINGER,
        "SO_ERROR" => SO_ERROR,
        "SO_TYPE" => SO_TYPE,
        "TCP_NODELAY" => TCP_NODELAY,
        "TCP_MAXSEG" => TCP_MAXSEG,
        "TCP_USER_TIMEOUT" => TCP_USER_TIMEOUT,
        "TCP_KEEPIDLE" => TCP_KEEPIDLE,
        "TCP_KEEPINTVL" => TCP_KEEPINTVL,
        "TCP_KEEPCNT" => TCP_KEEPCNT,
        "SOL_TCP" => SOL_TCP,
        "TCP_SYNCNT" => TCP_SYNCNT,
        "TCP_FASTOPEN" => TCP_FASTOPEN,
        "TCP_FASTOPEN_CONNECT" => TCP_FASTOPEN_CONNECT,
        "TCP_FASTOPEN_KEY" => TCP_FASTOPEN_KEY,
        "MSG_FASTOPEN" => MSG_FASTOPEN,
        "MSG_MORE" => MSG_MORE,
        "MSG_EOR" => MSG_EOR,
        "TCP_CORK" => TCP_CORK,
        "TCP_NOTSENT_LOWAT" => TCP_NOTSENT_LOWAT,
        "MSG_NOSIGNAL" => MSG_NOSIGNAL,
        "F_GETFL" => F_GETFL,
        "F_SETFL" => F_SETFL,
        "O_RDWR" => O_RDWR,
        "O_NONBLOCK" => O_NONBLOCK,
        "SHUT_RD" => SHUT_RD,
        "SHUT_WR" => SHUT_WR,
        "SHUT_RDWR" => SHUT_RDWR,
        "MSG_PEEK" => MSG_PEEK,
        "MSG_DONTWAIT" => MSG_DONTWAIT,
        "POLLIN" => POLLIN.into(),
        "POLLOUT" => POLLOUT.into(),
        "POLLERR" => POLLERR.into(),
        "POLLHUP" => POLLHUP.into(),
        "POLLNVAL" => POLLNVAL.into(),
        "POLLRDHUP" => 0x2000,
        "FIONREAD" | "SIOCINQ" => return Some(FIONREAD as i64),
        _ => return errno_of(name).map(i64::from),
    };
    Some(v.into())
}

fn errno_of(name: &str) -> Option<c_int> {
    use libc::*;
    Some(match name {
        "EINPROGRESS" => EINPROGRESS,
        "EAGAIN" | "EWOULDBLOCK" => EAGAIN,
        "EALREADY" => EALREADY,
        "EISCONN" => EISCONN,
        "ENOTCONN" => ENOTCONN,
        "ECONNREFUSED" => ECONNREFUSED,
        "ECONNRESET" => ECONNRESET,
        "ECONNABORTED" => ECONNABORTED,
        "ETIMEDOUT" => ETIMEDOUT,
        "EHOSTUNREACH" => EHOSTUNREACH,
        "EPIPE" => EPIPE,
        "EBADF" => EBADF,
        "EINVAL" => EINVAL,
        "ENOSYS" => ENOSYS,
        "ENOTTY" => ENOTTY,
        "ENOPROTOOPT" => ENOPROTOOPT,
        "EOPNOTSUPP" => EOPNOTSUPP,
        "EADDRINUSE" => EADDRINUSE,
        "EADDRNOTAVAIL" => EADDRNOTAVAIL,
        "EAFNOSUPPORT" => EAFNOSUPPORT,
        "ENOTSOCK" => ENOTSOCK,
        "EIO" => EIO,
        _ => return None,
    })
}

fn errno_name(e: c_int) -> String {
    const NAMES: &[&str] = &[
        "EINPROGRESS",
        "EAGAIN",
        "EALREADY",
        "EISCONN",
        "ENOTCONN",
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "EPIPE",
        "EBADF",
        "EINVAL",
        "ENOSYS",
        "ENOTTY",
        "ENOPROTOOPT",
        "EOPNOTSUPP",
        "EADDRINUSE",
        "EADDRNOTAVAIL",
        "EAFNOSUPPORT",
        "ENOTSOCK",
        "EIO",
    ];
    NAMES
        .iter()
        .find(|n| errno_of(n) == Some(e))
        .map_or_else(|| format!("errno {e}"), |n| n.to_string())
}

fn int_of(e: &Expr) -> Result<i64, String> {
    match e {
        Expr::Int(v) => Ok(*v),
        Expr::Sym(s) => symbol(s).ok_or(format!("unknown symbol {s}")),
        Expr::Or(ts) => ts.iter().try_fold(0i64, |acc, t| Ok(acc | int_of(t)?)),
        Expr::List(items) if items.len() == 1 => int_of(&items[0]),
        other => Err(format!("expected a number, got {other:?}")),
    }
}

// -------------------------------------------------------------------------------------------
// Running.

/// The function table, shared with the system-call thread. Its functions are thread-safe.
struct Table(PacketdrillInterface);

// SAFETY: the table's functions may be called from any thread (the shim locks), and userdata
// lives until `free`, which the runner calls once both threads are done.
unsafe impl Send for Table {}
// SAFETY: as above.
unsafe impl Sync for Table {}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Table {
    fn ud(&self) -> *mut c_void {
        self.0.userdata
    }

    fn now(&self) -> i64 {
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        if let Some(f) = self.0.gettimeofday {
            // SAFETY: a valid timeval.
            unsafe { f(self.ud(), &mut tv, std::ptr::null_mut()) };
        }
        // time_t and suseconds_t are i64 on the 64-bit Linux targets this builds for.
        tv.tv_sec * 1_000_000 + tv.tv_usec
    }

    fn usleep(&self, mut us: i64) {
        let Some(f) = self.0.usleep else { return };
        while us > 0 {
            let step = us.min(1_000_000_000);
            // SAFETY: plain arguments.
            unsafe { f(self.ud(), step as libc::useconds_t) };
            us -= step;
        }
    }

    fn inject(&self, p: &[u8]) -> Result<(), String> {
        let f = self.0.netdev_send.ok_or("no netdev_send")?;
        // SAFETY: `p` is readable for its length.
        let r = unsafe { f(self.ud(), p.as_ptr().cast(), p.len()) };
        if r == 0 {
            Ok(())
        } else {
            Err(format!("netdev_send failed: {}", errno_name(errno())))
        }
    }

    fn sniff(&self) -> Option<(Vec<u8>, i64)> {
        let f = self.0.netdev_receive?;
        let mut buf = vec![0u8; 65536];
        let mut n = buf.len();
        let mut t: libc::c_longlong = 0;
        // SAFETY: `buf` has `n` writable bytes.
        let r = unsafe { f(self.ud(), buf.as_mut_ptr().cast(), &mut n, &mut t) };
        if r != 0 || n == 0 {
            return None;
        }
        buf.truncate(n);
        Some((buf, t))
    }
}

/// What came back from a call.
#[derive(Debug, Clone, Default)]
struct Outcome {
    ret: i64,
    errno: c_int,
    /// getsockopt / ioctl value, or poll revents.
    value: Option<i64>,
    revents: Vec<i16>,
    /// Virtual time it returned at.
    end: i64,
}

type Job = Box<dyn FnOnce(&Table) -> Outcome + Send>;

/// What a finished call must have returned.
#[derive(Debug, Clone)]
struct Expect {
    line: usize,
    name: String,
    ret: i64,
    errno: Option<c_int>,
    /// The result is a new descriptor: map the script's number to the live one.
    new_fd: bool,
    value: Option<i64>,
    revents: Option<Vec<i64>>,
    /// Script time the call must return at (blocking calls).
    end: Option<i64>,
}

/// The connection the script's packets belong to (packetdrill's socket under test).
#[derive(Debug, Clone)]
struct Sut {
    /// Our address; unknown for an active open until the SYN goes out.
    local: Option<SocketAddr>,
    remote: SocketAddr,
    /// Our ISN as the script writes it and as it is live.
    isn: Option<(u32, u32)>,
    /// Script TS val → live TS val, for mapping inbound ecr.
    ts: HashMap<u32, u32>,
    first_ts: Option<(u32, u32)>,
}

impl Sut {
    /// Live minus script, for our sequence space.
    fn offset(&self) -> u32 {
        self.isn
            .map_or(0, |(script, live)| live.wrapping_sub(script))
    }
}

struct LivePacket {
    ip_ecn: u8,
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    /// (kind, data) in order; EOL ends the list.
    opts: Vec<(u8, Vec<u8>)>,
    payload: Vec<u8>,
}

fn parse_live(p: &[u8]) -> Result<LivePacket, String> {
    let (ip, payload) = IpRepr::parse(p).map_err(|e| format!("bad outbound IP packet: {e}"))?;
    if ip.protocol() != IpProtocol::Tcp {
        return Err(format!("outbound packet is not TCP: {:?}", ip.protocol()));
    }
    if payload.len() < 20 {
        return Err("truncated TCP header".into());
    }
    let be16 = |i: usize| u16::from_be_bytes([payload[i], payload[i + 1]]);
    let be32 =
        |i: usize| u32::from_be_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
    let doff = usize::from(payload[12] >> 4) * 4;
    if doff < 20 || doff > payload.len() {
        return Err("bad TCP data offset".into());
    }
    let mut opts = Vec::new();
    let raw = &payload[20..doff];
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0 => break,
            1 => {
                opts.push((1, Vec::new()));
                i += 1;
            }
            k => {
                let len = usize::from(*raw.get(i + 1).ok_or("truncated option")?);
                if len < 2 || i + len > raw.len() {
                    return Err("bad option length".into());
                }
                opts.push((k, raw[i + 2..i + len].to_vec()));
                i += len;
            }
        }
    }
    Ok(LivePacket {
        ip_ecn: ip.ecn(),
        src: SocketAddr::new(ip.src(), be16(0)),
        dst: SocketAddr::new(ip.dst(), be16(2)),
        flags: payload[13],
        seq: be32(4),
        ack: be32(8),
        win: be16(14),
        opts,
        payload: payload[doff..].to_vec(),
    })
}

fn flags_str(f: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [
        (SYN, 'S'),
        (FIN, 'F'),
        (RST, 'R'),
        (PSH, 'P'),
        (ACK, '.'),
        (ECE, 'E'),
        (CWR, 'W'),
        (URG, 'U'),
    ] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

fn describe_live(p: &LivePacket, sut: &Sut) -> String {
    let seq = p.seq.wrapping_sub(sut.offset());
    let opts: Vec<String> = p
        .opts
        .iter()
        .map(|(k, d)| match (k, d.len()) {
            (1, _) => "nop".into(),
            (2, 2) => format!("mss {}", u16::from_be_bytes([d[0], d[1]])),
            (3, 1) => format!("wscale {}", d[0]),
            (4, _) => "sackOK".into(),
            (8, 8) => format!(
                "TS val {} ecr {}",
                u32::from_be_bytes([d[0], d[1], d[2], d[3]]),
                u32::from_be_bytes([d[4], d[5], d[6], d[7]])
            ),
            (k, _) => format!("kind{k}({}B)", d.len()),
        })
        .collect();
    format!(
        "{} {}:{}({}) ack {} win {} <{}>",
        flags_str(p.flags),
        seq,
        seq.wrapping_add(p.payload.len() as u32),
        p.payload.len(),
        p.ack,
        p.win,
        opts.join(",")
    )
}

/// The raw option bytes for an inbound packet, padded with EOL to a multiple of 4.
fn option_bytes(opts: &[Opt], sut: &Sut, ack: bool) -> Result<Vec<u8>, String> {
    let mut b = Vec::new();
    for o in opts {
        match o {
            Opt::Nop => b.push(1),
            Opt::Eol => b.push(0),
            Opt::Mss(m) => b.extend_from_slice(&[2, 4, (m >> 8) as u8, *m as u8]),
            Opt::Wscale(s) => b.extend_from_slice(&[3, 3, *s]),
            Opt::SackOk => b.extend_from_slice(&[4, 2]),
            Opt::Ts(val, ecr) => {
                let live_ecr = if !ack || *ecr == 0 && sut.ts.is_empty() {
                    *ecr
                } else if let Some(&l) = sut.ts.get(ecr) {
                    l
                } else if let Some((s, l)) = sut.first_ts {
                    // packetdrill's --tcp_ts_ecr_scaled interpolation.
                    ecr.wrapping_sub(s).wrapping_add(l)
                } else {
                    return Err(format!(
                        "cannot map TS ecr {ecr}: no outbound TS val seen yet"
                    ));
                };
                b.extend_from_slice(&[8, 10]);
                b.extend_from_slice(&val.to_be_bytes());
                b.extend_from_slice(&live_ecr.to_be_bytes());
            }
            Opt::FastOpen { exp, cookie } => {
                if *exp {
                    b.extend_from_slice(&[254, (4 + cookie.len()) as u8, 0xf9, 0x89]);
                } else {
                    b.extend_from_slice(&[34, (2 + cookie.len()) as u8]);
                }
                b.extend_from_slice(cookie);
            }
            Opt::Sack(blocks) => {
                b.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                let off = sut.offset();
                for (l, r) in blocks {
                    b.extend_from_slice(&l.wrapping_add(off).to_be_bytes());
                    b.extend_from_slice(&r.wrapping_add(off).to_be_bytes());
                }
            }
        }
    }
    while b.len() % 4 != 0 {
        b.push(0);
    }
    if b.len() > 40 {
        return Err("more than 40 bytes of TCP options".into());
    }
    Ok(b)
}

#[allow(clippy::too_many_arguments)]
fn build_packet(
    ip_ecn: u8,
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[u8],
    payload_len: usize,
) -> Result<Vec<u8>, String> {
    let hdr = 20 + opts.len();
    let tcp_len = hdr + payload_len;
    let mut ip = IpRepr::new(src.ip(), dst.ip(), IpProtocol::Tcp, tcp_len, 64)
        .ok_or("mixed address families")?;
    ip.set_ecn(ip_ecn);
    let ipl = ip.header_len();
    let mut pkt = vec![0u8; ipl + tcp_len];
    ip.emit(&mut pkt[..ipl]);
    let t = &mut pkt[ipl..];
    t[0..2].copy_from_slice(&src.port().to_be_bytes());
    t[2..4].copy_from_slice(&dst.port().to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = ((hdr / 4) as u8) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&win.to_be_bytes());
    t[20..hdr].copy_from_slice(opts);
    synack_wire::tcp::fill_checksum(t, src.ip(), dst.ip());
    Ok(pkt)
}

/// A call in flight on the system-call thread.
struct InFlight {
    expect: Expect,
}

struct Runner {
    table: Arc<Table>,
    shim: Arc<Shim>,
    opts: Options,
    start: i64,
    fds: HashMap<i64, c_int>,
    /// Live descriptors that started an active open (their next connect or sendto is the
    /// same connection; a fresh socket's is a new one, whatever its number).
    opened: std::collections::HashSet<c_int>,
    sut: Option<Sut>,
    listening: bool,
    next_remote_port: u16,
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<Outcome>,
    worker: Option<std::thread::JoinHandle<()>>,
    in_flight: Option<InFlight>,
    /// The previous event: (was an inbound packet, its script time).
    last: Option<(bool, i64)>,
    report: Report,
}

/// How long (wall clock) a call may take to finish or block before the runner gives up. A
/// guard against a hung stack, never a measure of anything.
const CALL_GUARD: std::time::Duration = std::time::Duration::from_secs(5);

impl Runner {
    fn new(opts: Options) -> Runner {
        let flags = format!("local_ip={} {}", opts.local_ip, opts.so_flags);
        let flags = std::ffi::CString::new(flags).unwrap_or_default();
        let mut ifc = PacketdrillInterface::empty();
        // SAFETY: a NUL-terminated string and a writable table.
        unsafe { ffi::packetdrill_interface_init(flags.as_ptr(), &mut ifc) };
        // SAFETY: the userdata of the table just made.
        let shim = unsafe { ffi::shim_of(ifc.userdata) }.expect("the table has a shim");
        let table = Arc::new(Table(ifc));
        let (jtx, jrx) = mpsc::channel::<Job>();
        let (rtx, rrx) = mpsc::channel::<Outcome>();
        let t = Arc::clone(&table);
        let worker = std::thread::spawn(move || {
            while let Ok(job) = jrx.recv() {
                let mut out = job(&t);
                out.end = t.now();
                #[cfg(test)]
                std::thread::sleep(std::time::Duration::from_millis(
                    tests::SLOW_RETURN_MS.load(std::sync::atomic::Ordering::Relaxed),
                ));
                if rtx.send(out).is_err() {
                    break;
                }
            }
        });
        let start = table.now();
        Runner {
            table,
            shim,
            next_remote_port: opts.remote_port,
            opts,
            start,
            fds: HashMap::new(),
            opened: Default::default(),
            sut: None,
            listening: false,
            jobs: Some(jtx),
            results: rrx,
            worker: Some(worker),
            in_flight: None,
            last: None,
            report: Report::default(),
        }
    }

    /// Script time now.
    fn now(&self) -> i64 {
        self.table.now() - self.start
    }

    fn check_time(
        &self,
        line: usize,
        what: &str,
        t: &TimeSpec,
        expected: i64,
        actual: i64,
    ) -> Result<(), String> {
        if t.kind == TimeKind::Any {
            return Ok(());
        }
        let tol = self.opts.tolerance_usecs;
        let hi = t.range_end.map_or(expected, |e| expected - t.usecs + e);
        if actual < expected - tol || actual > hi + tol {
            return Err(format!(
                "line {line}: timing error: expected {what} at {:.6} s but it happened at {:.6} s (tolerance {:.6} s)",
                expected as f64 / 1e6,
                actual as f64 / 1e6,
                tol as f64 / 1e6
            ));
        }
        Ok(())
    }

    fn live_fd(&self, e: &Expr) -> Result<c_int, String> {
        let n = int_of(e)?;
        Ok(self.fds.get(&n).copied().unwrap_or(n as c_int))
    }

    /// Collect a finished call, if any; `wait`: wait (bounded) for it.
    fn reap(&mut self, wait: bool) -> Result<(), String> {
        let Some(f) = &self.in_flight else {
            return Ok(());
        };
        let line = f.expect.line;
        let got = if wait {
            self.results.recv_timeout(CALL_GUARD).ok()
        } else {
            self.results.try_recv().ok()
        };
        match got {
            Some(out) => {
                let f = self.in_flight.take().ok_or("no call in flight")?;
                self.verify(&f.expect, &out)
            }
            None if wait => Err(format!(
                "line {line}: blocking call {} never returned",
                f.expect.name
            )),
            None => Ok(()),
        }
    }

    fn verify(&mut self, e: &Expect, out: &Outcome) -> Result<(), String> {
        let line = e.line;
        let got = if out.ret == -1 {
            format!("-1 {}", errno_name(out.errno))
        } else {
            out.ret.to_string()
        };
        if e.new_fd && e.ret >= 0 {
            if out.ret < 0 {
                return Err(format!(
                    "line {line}: {} returned {got}, expected {}",
                    e.name, e.ret
                ));
            }
            self.fds.insert(e.ret, out.ret as c_int);
            self.opened.remove(&(out.ret as c_int));
        } else if out.ret != e.ret || (e.ret == -1 && e.errno != Some(out.errno)) {
            let want = match e.errno {
                Some(n) => format!("-1 {}", errno_name(n)),
                None => e.ret.to_string(),
            };
            return Err(format!(
                "line {line}: {} returned {got}, expected {want}",
                e.name
            ));
        }
        if let (Some(want), Some(v)) = (e.value, out.value) {
            if want != v {
                return Err(format!(
                    "line {line}: {} gave value {v}, expected {want}",
                    e.name
                ));
            }
        }
        if let Some(want) = &e.revents {
            let got: Vec<i64> = out.revents.iter().map(|&r| i64::from(r as u16)).collect();
            if *want != got {
                return Err(format!(
                    "line {line}: poll revents {got:?}, expected {want:?}"
                ));
            }
        }
        if let Some(end) = e.end {
            let actual = out.end - self.start;
            let spec = TimeSpec {
                kind: TimeKind::Abs,
                usecs: end,
                end: None,
                range_end: None,
            };
            self.check_time(line, "system call return", &spec, end, actual)?;
        }
        Ok(())
    }

    /// Run a call on the system-call thread; return once it finished or blocked.
    fn dispatch(&mut self, job: Job, expect: Expect, blocking: bool) -> Result<(), String> {
        let line = expect.line;
        self.reap(true)?;
        self.jobs
            .as_ref()
            .ok_or("no system-call thread")?
            .send(job)
            .map_err(|_| "system-call thread gone")?;
        self.report.calls += 1;
        self.in_flight = Some(InFlight {
            expect: expect.clone(),
        });
        let mut waited = std::time::Duration::ZERO;
        let step = std::time::Duration::from_millis(1);
        loop {
            match self.results.recv_timeout(step) {
                Ok(out) => {
                    self.in_flight = None;
                    return self.verify(&expect, &out);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("system-call thread gone".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.shim.blocked_calls() > 0 {
                if blocking {
                    return Ok(());
                }
                return Err(format!(
                    "line {line}: {} blocked, but the script does not mark it blocking (T...E)",
                    expect.name
                ));
            }
            waited += step;
            if waited > CALL_GUARD {
                return Err(format!(
                    "line {line}: {} neither returned nor blocked",
                    expect.name
                ));
            }
        }
    }

    fn call(&mut self, ev: &Event, c: &Call) -> Result<(), String> {
        let line = ev.line;
        // As packetdrill's system-call thread: a call waits for the one before it (a blocking
        // call whose end the script has reached) to return, so that a descriptor it returned
        // (`accept` = 4) names the real one in this call's arguments.
        self.reap(true)?;
        let want_errno = match &c.errno {
            Some(n) => Some(errno_of(n).ok_or(format!("line {line}: unknown errno {n}"))?),
            None => None,
        };
        let mut expect = Expect {
            line,
            name: c.name.clone(),
            ret: c.ret,
            errno: want_errno,
            new_fd: false,
            value: None,
            revents: None,
            end: None,
        };
        let arg = |i: usize| -> Result<&Expr, String> {
            c.args
                .get(i)
                .ok_or(format!("line {line}: {} needs argument {}", c.name, i + 1))
        };
        let int = |i: usize| -> Result<i64, String> {
            int_of(arg(i)?).map_err(|e| format!("line {line}: {e}"))
        };
        let blocking = ev.time.end.is_some();
        let plain = |f: Box<dyn FnOnce(&Table) -> i64 + Send>| -> Job {
            Box::new(move |t: &Table| {
                let ret = f(t);
                Outcome {
                    ret,
                    errno: if ret < 0 { errno() } else { 0 },
                    ..Outcome::default()
                }
            })
        };
        let job: Job = match c.name.as_str() {
            "socket" => {
                let domain = match arg(0)? {
                    Expr::Ellipsis => {
                        if self.opts.local_ip.is_ipv4() {
                            libc::AF_INET
                        } else {
                            libc::AF_INET6
                        }
                    }
                    e => int_of(e)? as c_int,
                };
                let (ty, proto) = (int(1)? as c_int, int(2)? as c_int);
                expect.new_fd = true;
                let f = self.table.0.socket.ok_or("no socket")?;
                // SAFETY (for all jobs below): the table's functions with valid arguments.
                plain(Box::new(move |t| {
                    unsafe { f(t.ud(), domain, ty, proto) }.into()
                }))
            }
            "bind" => {
                let fd = self.live_fd(arg(0)?)?;
                let addr =
                    sockaddr::to_bytes(SocketAddr::new(self.opts.local_ip, self.opts.bind_port));
                let f = self.table.0.bind.ok_or("no bind")?;
                plain(Box::new(move |t| {
                    unsafe { f(t.ud(), fd, addr.as_ptr().cast(), addr.len() as socklen_t) }.into()
                }))
            }
            "listen" => {
                let fd = self.live_fd(arg(0)?)?;
                let backlog = int(1)? as c_int;
                let f = self.table.0.listen.ok_or("no listen")?;
                if c.ret == 0 {
                    self.listening = true;
                }
                plain(Box::new(move |t| unsafe { f(t.ud(), fd, backlog) }.into()))
            }
            "accept" => {
                let fd = self.live_fd(arg(0)?)?;
                expect.new_fd = true;
                let f = self.table.0.accept.ok_or("no accept")?;
                plain(Box::new(move |t| {
                    let mut sa = [0u8; 128];
                    let mut len = sa.len() as socklen_t;
                    unsafe { f(t.ud(), fd, sa.as_mut_ptr().cast(), &mut len) }.into()
                }))
            }
            "connect" => {
                let fd = self.live_fd(arg(0)?)?;
                let remote = SocketAddr::new(self.opts.remote_ip, self.opts.connect_port);
                let addr = sockaddr::to_bytes(remote);
                // A connect again (EALREADY, EISCONN, ...) keeps the connection under test.
                if self.listening
                    || !self.opened.contains(&fd)
                    || self.sut.as_ref().is_none_or(|s| s.remote != remote)
                {
                    self.opened.insert(fd);
                    self.sut = Some(Sut {
                        local: None,
                        remote,
                        isn: None,
                        ts: HashMap::new(),
                        first_ts: None,
                    });
                }
                self.listening = false;
                let f = self.table.0.connect.ok_or("no connect")?;
                plain(Box::new(move |t| {
                    unsafe { f(t.ud(), fd, addr.as_ptr().cast(), addr.len() as socklen_t) }.into()
                }))
            }
            "read" | "recv" | "write" | "send" => {
                let fd = self.live_fd(arg(0)?)?;
                let n = int(2)?.max(0) as usize;
                let flags = if c.name == "recv" || c.name == "send" {
                    int(3)? as c_int
                } else {
                    0
                };
                let tb = &self.table.0;
                match c.name.as_str() {
                    "read" => {
                        let f = tb.read.ok_or("no read")?;
                        plain(Box::new(move |t| {
                            let mut b = vec![0u8; n];
                            (unsafe { f(t.ud(), fd, b.as_mut_ptr().cast(), n) }) as i64
                        }))
                    }
                    "recv" => {
                        let f = tb.recv.ok_or("no recv")?;
                        plain(Box::new(move |t| {
                            let mut b = vec![0u8; n];
                            (unsafe { f(t.ud(), fd, b.as_mut_ptr().cast(), n, flags) }) as i64
                        }))
                    }
                    "write" => {
                        let f = tb.write.ok_or("no write")?;
                        plain(Box::new(move |t| {
                            let b = vec![0u8; n];
                            (unsafe { f(t.ud(), fd, b.as_ptr().cast(), n) }) as i64
                        }))
                    }
                    _ => {
                        let f = tb.send.ok_or("no send")?;
                        plain(Box::new(move |t| {
                            let b = vec![0u8; n];
                            (unsafe { f(t.ud(), fd, b.as_ptr().cast(), n, flags) }) as i64
                        }))
                    }
                }
            }
            "sendto" => {
                // sendto(fd, ..., len, flags, ..., ...): the remote address and the connect
                // port, as packetdrill fills them (an unconnected socket with MSG_FASTOPEN
                // opens a connection: it becomes the one under test).
                let fd = self.live_fd(arg(0)?)?;
                let n = int(2)?.max(0) as usize;
                let flags = int(3)? as c_int;
                let remote = SocketAddr::new(self.opts.remote_ip, self.opts.connect_port);
                let addr = sockaddr::to_bytes(remote);
                let other = !self.opened.contains(&fd)
                    || self.sut.as_ref().is_none_or(|s| s.remote != remote);
                if flags & libc::MSG_FASTOPEN != 0 && (self.listening || other) {
                    self.opened.insert(fd);
                    self.sut = Some(Sut {
                        local: None,
                        remote,
                        isn: None,
                        ts: HashMap::new(),
                        first_ts: None,
                    });
                    self.listening = false;
                }
                let f = self.table.0.sendto.ok_or("no sendto")?;
                plain(Box::new(move |t| {
                    let b = vec![0u8; n];
                    (unsafe {
                        f(
                            t.ud(),
                            fd,
                            b.as_ptr().cast(),
                            n,
                            flags,
                            addr.as_ptr().cast(),
                            addr.len() as socklen_t,
                        )
                    }) as i64
                }))
            }
            "close" => {
                let fd = self.live_fd(arg(0)?)?;
                let f = self.table.0.close.ok_or("no close")?;
                plain(Box::new(move |t| unsafe { f(t.ud(), fd) }.into()))
            }
            "shutdown" => {
                let fd = self.live_fd(arg(0)?)?;
                let how = int(1)? as c_int;
                let f = self.table.0.shutdown.ok_or("no shutdown")?;
                plain(Box::new(move |t| unsafe { f(t.ud(), fd, how) }.into()))
            }
            "setsockopt" => {
                let fd = self.live_fd(arg(0)?)?;
                let (level, name) = (int(1)? as c_int, int(2)? as c_int);
                let bytes: Vec<u8> = match arg(3)? {
                    Expr::Struct(fields) => {
                        let get = |k: &[&str]| {
                            fields
                                .iter()
                                .find(|(n, _)| k.contains(&n.as_str()))
                                .map(|(_, v)| int_of(v))
                                .unwrap_or(Ok(0))
                        };
                        let on = get(&["l_onoff", "onoff"])? as c_int;
                        let secs = get(&["l_linger", "linger"])? as c_int;
                        let mut b = on.to_ne_bytes().to_vec();
                        b.extend_from_slice(&secs.to_ne_bytes());
                        b
                    }
                    Expr::Str(text) => {
                        let mut b = unescape(text)?;
                        if c.args.len() > 4 {
                            b.resize(int(4)?.max(0) as usize, 0);
                        }
                        b
                    }
                    e => (int_of(e)? as c_int).to_ne_bytes().to_vec(),
                };
                let f = self.table.0.setsockopt.ok_or("no setsockopt")?;
                plain(Box::new(move |t| {
                    unsafe {
                        f(
                            t.ud(),
                            fd,
                            level,
                            name,
                            bytes.as_ptr().cast(),
                            bytes.len() as socklen_t,
                        )
                    }
                    .into()
                }))
            }
            "getsockopt" => {
                let fd = self.live_fd(arg(0)?)?;
                let (level, name) = (int(1)? as c_int, int(2)? as c_int);
                if let Expr::List(v) = arg(3)? {
                    if let [x] = v.as_slice() {
                        expect.value = Some(int_of(x)?);
                    }
                }
                let f = self.table.0.getsockopt.ok_or("no getsockopt")?;
                Box::new(move |t: &Table| {
                    let mut v: c_int = 0;
                    let mut len = std::mem::size_of::<c_int>() as socklen_t;
                    let ret: i64 =
                        unsafe { f(t.ud(), fd, level, name, (&raw mut v).cast(), &mut len) }.into();
                    Outcome {
                        ret,
                        errno: if ret < 0 { errno() } else { 0 },
                        value: Some(v.into()),
                        ..Outcome::default()
                    }
                })
            }
            "fcntl" => {
                let fd = self.live_fd(arg(0)?)?;
                let cmd = int(1)? as c_int;
                let a = if c.args.len() > 2 { int(2)? } else { 0 };
                let f = self.table.0.fcntl.ok_or("no fcntl")?;
                plain(Box::new(move |t| {
                    unsafe { f(t.ud(), fd, cmd, a as libc::c_long) }.into()
                }))
            }
            "ioctl" => {
                let fd = self.live_fd(arg(0)?)?;
                let req = int(1)? as libc::c_ulong;
                if let Ok(Expr::List(v)) = arg(2) {
                    if let [x] = v.as_slice() {
                        expect.value = Some(int_of(x)?);
                    }
                }
                let f = self.table.0.ioctl.ok_or("no ioctl")?;
                Box::new(move |t: &Table| {
                    let mut v: c_int = 0;
                    let ret: i64 =
                        unsafe { f(t.ud(), fd, req, (&raw mut v).cast::<c_void>()) }.into();
                    Outcome {
                        ret,
                        errno: if ret < 0 { errno() } else { 0 },
                        value: Some(v.into()),
                        ..Outcome::default()
                    }
                })
            }
            "poll" => {
                let Expr::List(items) = arg(0)? else {
                    return Err(format!("line {line}: poll needs a list of pollfds"));
                };
                let mut pfds = Vec::new();
                let mut want = Vec::new();
                for it in items {
                    let Expr::Struct(fields) = it else {
                        return Err(format!(
                            "line {line}: poll entries are {{fd=..., events=...}}"
                        ));
                    };
                    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
                    let fd = self.live_fd(get("fd").ok_or("pollfd without fd")?)?;
                    let events = get("events").map(int_of).transpose()?.unwrap_or(0);
                    if let Some(r) = get("revents") {
                        want.push(int_of(r)?);
                    }
                    pfds.push(libc::pollfd {
                        fd,
                        events: events as i16,
                        revents: 0,
                    });
                }
                if want.len() == pfds.len() {
                    expect.revents = Some(want);
                }
                let timeout = int(2)? as c_int;
                let f = self.table.0.poll.ok_or("no poll")?;
                Box::new(move |t: &Table| {
                    let mut pfds = pfds;
                    let ret: i64 = unsafe {
                        f(
                            t.ud(),
                            pfds.as_mut_ptr(),
                            pfds.len() as libc::nfds_t,
                            timeout,
                        )
                    }
                    .into();
                    Outcome {
                        ret,
                        errno: if ret < 0 { errno() } else { 0 },
                        revents: pfds.iter().map(|p| p.revents).collect(),
                        ..Outcome::default()
                    }
                })
            }
            other => return Err(format!("line {line}: unsupported system call {other}")),
        };
        // When the call is due, from the time before waiting for it (a relative time counts
        // from the previous event, not from the end of the wait).
        let expected = self.expected(ev, self.now());
        self.wait_for(ev)?;
        let start = self.now();
        self.check_time(line, "system call start", &ev.time, expected, start)?;
        if let Some(end) = ev.time.end {
            expect.end = Some(match ev.time.kind {
                TimeKind::Rel => expected - ev.time.usecs + end,
                _ => end,
            });
        }
        self.last = Some((false, expected));
        self.dispatch(job, expect, blocking)
    }

    /// The script time an event is due at, given the current script time.
    fn expected(&self, ev: &Event, now: i64) -> i64 {
        match ev.time.kind {
            TimeKind::Abs => ev.time.usecs,
            TimeKind::Any => now,
            TimeKind::Rel => {
                let inbound = matches!(&ev.action, Action::Packet(p) if p.inbound);
                let base = match self.last {
                    Some((true, t)) if inbound => t,
                    _ => now,
                };
                base + ev.time.usecs
            }
        }
    }

    /// Sleep (virtually) until the event is due.
    fn wait_for(&mut self, ev: &Event) -> Result<(), String> {
        let now = self.now();
        let due = self.expected(ev, now);
        if ev.time.kind != TimeKind::Any && due > now {
            self.table.usleep(due - now);
        }
        Ok(())
    }

    fn inbound(&mut self, ev: &Event, p: &ScriptPacket) -> Result<(), String> {
        let line = ev.line;
        if p.flags & SYN != 0 && p.flags & ACK == 0 && (self.sut.is_none() || self.listening) {
            // A SYN for the listener: the connection it makes is the one under test.
            let remote = SocketAddr::new(self.opts.remote_ip, self.next_remote_port);
            self.next_remote_port = self.next_remote_port.wrapping_add(1);
            self.sut = Some(Sut {
                local: Some(SocketAddr::new(self.opts.local_ip, self.opts.bind_port)),
                remote,
                isn: None,
                ts: HashMap::new(),
                first_ts: None,
            });
            self.listening = false;
        }
        let now = self.now();
        let due = self.expected(ev, now);
        self.wait_for(ev)?;
        let at = self.now();
        self.check_time(line, "inbound packet", &ev.time, due, at)?;
        self.last = Some((true, due));
        let sut = self
            .sut
            .as_ref()
            .ok_or(format!("line {line}: no socket for this packet"))?;
        let local = sut.local.ok_or(format!(
            "line {line}: the connection's local address is not known yet (no SYN seen)"
        ))?;
        let has_ack = p.flags & ACK != 0;
        let ack = if has_ack {
            p.ack.unwrap_or(0).wrapping_add(sut.offset())
        } else {
            p.ack.unwrap_or(0)
        };
        let opts = option_bytes(p.opts.as_deref().unwrap_or(&[]), sut, has_ack)
            .map_err(|e| format!("line {line}: {e}"))?;
        let pkt = build_packet(
            p.ip_ecn.unwrap_or(0),
            sut.remote,
            local,
            p.flags,
            p.seq,
            ack,
            p.win.unwrap_or(0),
            &opts,
            p.len as usize,
        )
        .map_err(|e| format!("line {line}: {e}"))?;
        self.table
            .inject(&pkt)
            .map_err(|e| format!("line {line}: {e}"))?;
        self.report.packets_in += 1;
        Ok(())
    }

    fn outbound(&mut self, ev: &Event, p: &ScriptPacket) -> Result<(), String> {
        let line = ev.line;
        let now = self.now();
        let due = self.expected(ev, now);
        self.last = Some((false, due));
        let sut = self
            .sut
            .as_mut()
            .ok_or(format!("line {line}: no socket for this packet"))?;
        let mut skipped = 0;
        let (live, t) = loop {
            let Some((bytes, t)) = self.table.sniff() else {
                return Err(format!(
                    "line {line}: expected an outbound packet, but the stack has nothing more to send"
                ));
            };
            let live = parse_live(&bytes).map_err(|e| format!("line {line}: {e}"))?;
            let ours = match sut.local {
                Some(l) => live.src == l && live.dst == sut.remote,
                // An active open: the SYN to the remote tells our address.
                None => live.dst == sut.remote && live.flags & SYN != 0 && live.flags & ACK == 0,
            };
            if ours {
                break (live, t);
            }
            skipped += 1;
            if skipped > 64 {
                return Err(format!(
                    "line {line}: no outbound packet for the socket under test"
                ));
            }
        };
        if sut.local.is_none() {
            sut.local = Some(live.src);
        }
        if p.flags & SYN != 0 && sut.isn.is_none() {
            sut.isn = Some((p.seq, live.seq));
        }
        let actual = t - self.start;
        let describe = describe_live(&live, sut);
        let fail = |what: String| format!("line {line}: {what}\n  actual: {describe}");
        if let Some(want) = p.ip_ecn {
            if live.ip_ecn != want {
                return Err(fail(format!(
                    "IP ECN field {} expected {want}",
                    live.ip_ecn
                )));
            }
        }
        if live.flags != p.flags {
            return Err(fail(format!(
                "flags {} expected {}",
                flags_str(live.flags),
                flags_str(p.flags)
            )));
        }
        let seq = live.seq.wrapping_sub(sut.offset());
        if seq != p.seq {
            return Err(fail(format!("seq {seq} expected {}", p.seq)));
        }
        if live.payload.len() != p.len as usize {
            return Err(fail(format!(
                "payload {} bytes expected {}",
                live.payload.len(),
                p.len
            )));
        }
        if live.payload.iter().any(|&b| b != 0) {
            return Err(fail("payload differs from the zeros written".into()));
        }
        if p.flags & ACK != 0 && live.ack != p.ack.unwrap_or(0) {
            return Err(fail(format!(
                "ack {} expected {}",
                live.ack,
                p.ack.unwrap_or(0)
            )));
        }
        if let Some(w) = p.win {
            if live.win != w {
                return Err(fail(format!("win {} expected {w}", live.win)));
            }
        }
        if let Some(want) = &p.opts {
            let got = &live.opts;
            if got.len() != want.len() {
                return Err(fail("options differ".into()));
            }
            for ((kind, data), o) in got.iter().zip(want) {
                let ok = match o {
                    Opt::Nop => *kind == 1,
                    Opt::Eol => *kind == 0,
                    Opt::Mss(m) => *kind == 2 && *data == m.to_be_bytes(),
                    Opt::Wscale(s) => *kind == 3 && *data == [*s],
                    Opt::SackOk => *kind == 4 && data.is_empty(),
                    Opt::Ts(val, ecr) => {
                        if *kind != 8 || data.len() != 8 {
                            false
                        } else {
                            let lv = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                            let le = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                            sut.ts.insert(*val, lv);
                            if sut.first_ts.is_none() {
                                sut.first_ts = Some((*val, lv));
                            }
                            le == *ecr
                        }
                    }
                    Opt::FastOpen { exp: true, cookie } => {
                        *kind == 254
                            && data.len() >= 2
                            && data[..2] == [0xf9, 0x89]
                            && data[2..] == cookie[..]
                    }
                    Opt::FastOpen { exp: false, cookie } => *kind == 34 && *data == cookie[..],
                    Opt::Sack(blocks) => {
                        let off = sut.offset();
                        *kind == 5
                            && data.len() == 8 * blocks.len()
                            && blocks.iter().enumerate().all(|(i, (l, r))| {
                                let d = &data[8 * i..8 * i + 8];
                                // SACK blocks name the peer's sequence space: as written.
                                let _ = off;
                                u32::from_be_bytes([d[0], d[1], d[2], d[3]]) == *l
                                    && u32::from_be_bytes([d[4], d[5], d[6], d[7]]) == *r
                            })
                    }
                };
                if !ok {
                    return Err(fail(format!("option {o:?} differs")));
                }
            }
        }
        self.report.packets_out += 1;
        self.check_time(line, "outbound packet", &ev.time, due, actual)
    }

    fn run(&mut self, events: &[Event]) -> Result<(), String> {
        for ev in events {
            self.reap(false)?;
            match &ev.action {
                Action::Packet(p) if p.inbound => self.inbound(ev, p)?,
                Action::Packet(p) => self.outbound(ev, p)?,
                Action::Call(c) => self.call(ev, c)?,
            }
            self.report.events += 1;
        }
        self.reap(true)
    }

    fn finish(&mut self) {
        // Wake any call still blocked, then stop the thread and free the table.
        self.shim.shut();
        self.jobs = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let Some(f) = self.table.0.free {
            // SAFETY: the table's userdata, freed once; the worker is gone.
            unsafe { f(self.table.ud()) };
        }
    }
}

/// Run a script's text.
pub fn run(text: &str, opts: &Options) -> Result<Report, String> {
    let (settings, events) = parse_script(text)?;
    let mut opts = opts.clone();
    for (k, v) in settings {
        match k.as_str() {
            "tolerance_usecs" => {
                opts.tolerance_usecs = v
                    .parse()
                    .map_err(|e| format!("--tolerance_usecs={v}: {e}"))?
            }
            "so_flags" => opts.so_flags = format!("{} {v}", opts.so_flags),
            "local_ip" => opts.local_ip = v.parse().map_err(|e| format!("--local_ip={v}: {e}"))?,
            "remote_ip" => {
                opts.remote_ip = v.parse().map_err(|e| format!("--remote_ip={v}: {e}"))?
            }
            _ => return Err(format!("unsupported setting --{k}")),
        }
    }
    if events.is_empty() {
        return Err("no events".into());
    }
    if events[0].time.kind != TimeKind::Any && events[0].time.usecs != 0 {
        return Err(format!(
            "line {}: the first event must be at time 0",
            events[0].line
        ));
    }
    let mut r = Runner::new(opts);
    let result = r.run(&events);
    r.finish();
    result.map(|()| r.report.clone())
}

/// Run a script file.
pub fn run_file(path: &std::path::Path, opts: &Options) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    run(&text, opts).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Wall-clock milliseconds the system-call thread takes to hand back a finished call's
    /// result (its return time is taken before): a slow thread, as on a loaded machine.
    pub(super) static SLOW_RETURN_MS: AtomicU64 = AtomicU64::new(0);

    /// A blocking `accept` returns on the system-call thread when the handshake's last ACK
    /// arrives; the very next call names the descriptor it returned. On a loaded machine the
    /// thread's result came after that call had already looked up the script's descriptor (and
    /// found no such descriptor: EBADF, a CI failure); the next call must wait for the one
    /// before it. (The script numbers it 40, which the process's real one never is here.)
    #[test]
    fn a_call_after_a_blocking_call_sees_the_descriptor_it_returned() {
        let script = "\
0         socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0        bind(3, ..., ...) = 0
+0        listen(3, 1) = 0
+0...0.2  accept(3, ..., ...) = 40
+.1       < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0        > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 5>
+.1       < . 1:1(0) ack 1 win 257
+0        getsockopt(40, SOL_SOCKET, SO_ERROR, [0], [4]) = 0
";
        SLOW_RETURN_MS.store(3, Ordering::Relaxed);
        let r = run(script, &Options::default());
        SLOW_RETURN_MS.store(0, Ordering::Relaxed);
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn times() {
        assert_eq!(parse_secs("0.100").unwrap(), 100_000);
        assert_eq!(parse_secs(".1").unwrap(), 100_000);
        assert_eq!(parse_secs("2").unwrap(), 2_000_000);
        assert!(parse_secs("1.2345678").is_err());
        let (t, rest) = parse_time("+0...0.25 accept(3, ..., ...) = 4").unwrap();
        assert_eq!((t.kind, t.usecs, t.end), (TimeKind::Rel, 0, Some(250_000)));
        assert_eq!(rest.trim(), "accept(3, ..., ...) = 4");
    }

    #[test]
    fn calls() {
        let c = parse_call("connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)")
            .unwrap();
        assert_eq!(c.name, "connect");
        assert_eq!(c.args, vec![Expr::Int(3), Expr::Ellipsis, Expr::Ellipsis]);
        assert_eq!((c.ret, c.errno.as_deref()), (-1, Some("EINPROGRESS")));
        let c = parse_call("setsockopt(3, SOL_SOCKET, SO_LINGER, {l_onoff=1, l_linger=0}, 8) = 0")
            .unwrap();
        assert!(matches!(&c.args[3], Expr::Struct(f) if f.len() == 2));
        let c = parse_call("fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0").unwrap();
        assert_eq!(
            int_of(&c.args[2]).unwrap(),
            i64::from(libc::O_RDWR | libc::O_NONBLOCK)
        );
        let c = parse_call("poll([{fd=4, events=POLLIN, revents=POLLIN}], 1, 0) = 1").unwrap();
        assert!(matches!(&c.args[0], Expr::List(v) if v.len() == 1));
    }

    #[test]
    fn packets() {
        let p = parse_packet(
            true,
            " S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>",
        )
        .unwrap();
        assert_eq!(p.flags, SYN);
        assert_eq!(p.win, Some(32792));
        assert_eq!(
            p.opts,
            Some(vec![
                Opt::Mss(1000),
                Opt::SackOk,
                Opt::Nop,
                Opt::Nop,
                Opt::Nop,
                Opt::Wscale(7)
            ])
        );
        let p = parse_packet(false, "P. 1:1001(1000) ack 1 <...>").unwrap();
        assert_eq!(
            (p.flags, p.seq, p.len, p.ack, p.opts),
            (PSH | ACK, 1, 1000, Some(1), None)
        );
        let p = parse_packet(false, "R. 0:0(0) ack 1").unwrap();
        assert_eq!(p.opts, Some(vec![]));
        assert!(
            parse_packet(true, ". 1:1(0) ack 1").is_err(),
            "inbound needs win"
        );
        assert!(
            parse_packet(false, "P. 1:10(1000) ack 1").is_err(),
            "bad range"
        );
    }
}
