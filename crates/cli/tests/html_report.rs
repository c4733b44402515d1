//! The HTML report of `synack demo --html` and `synack trace --html`, rendered by headless
//! Chromium (Debian's `chromium`): no console errors, one arrow per segment of the run, and
//! a screenshot that is not blank. Without chromium the Chromium tests skip with a message,
//! unless CI=true, where they fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Chromium's path, or `None` (skipping with a message) when it is not installed and CI is
/// not set.
fn chromium(test: &str) -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        if let Some(p) = found {
            return Some(p);
        }
    }
    assert!(
        !ci(),
        "{test}: chromium is not installed, and CI=true requires it"
    );
    eprintln!("{test}: skipped: chromium is not installed (apt-get install chromium)");
    None
}

fn dir(test: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("test directory");
    d
}

fn synack(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_synack"))
        .args(args)
        .output()
        .expect("run synack");
    assert!(
        out.status.success(),
        "synack {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs headless Chromium on `page` with `args`, for at most a minute (killed by its pid
/// past that), with its own profile directory.
fn run_chromium(bin: &Path, work: &Path, page: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for chromium") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The page's console messages, as Chromium logs them to stderr.
fn console_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_owned)
        .collect()
}

/// Nothing in the page is fetched: no external scripts, styles, images or frames.
fn assert_self_contained(html: &str) {
    for bad in ["<link", " src=", "@import", "url(http", "<iframe", "<img"] {
        assert!(!html.contains(bad), "the page uses {bad:?}");
    }
    // The only absolute URL is the SVG namespace, which is a name, not a fetch.
    let urls = html.matches("http://").count() + html.matches("https://").count();
    let ns = html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
    assert_eq!(urls, ns, "absolute URLs besides the SVG namespace");
}

/// Decodes a PNG: its size and how many distinct colours it has.
fn png_stats(path: &Path) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("the screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let px = info.color_type.samples() * usize::from(info.bit_depth as u8).div_ceil(8);
    let mut colours = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px.max(1)).step_by(7) {
        colours.insert(p.to_vec());
        if colours.len() > 1000 {
            break;
        }
    }
    (info.width, info.height, colours.len())
}

#[test]
fn demo_report_renders_with_one_arrow_per_segment() {
    let test = "demo_report_renders_with_one_arrow_per_segment";
    let work = dir(test);
    let page = work.join("demo.html");
    let page_s = page.to_str().expect("UTF-8 path");
    let json = synack(&["demo", "--calls", "3", "--json", "--html", page_s]);
    let doc: Value = serde_json::from_str(&json).expect("the JSON");
    // The HTTP/3 rows count QUIC datagrams as their segments but trace no TCP: the page draws
    // no ladder and no waterfall for them.
    let quic = |s: &&Value| s["name"].as_str().is_some_and(|n| n.contains("HTTP/3"));
    let segments: u64 = doc["scenarios"]
        .as_array()
        .expect("scenarios")
        .iter()
        .filter(|s| !quic(s))
        .map(|s| s["segments"].as_u64().expect("segments"))
        .sum();
    let n = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !quic(s))
        .count();
    assert!(n >= 4, "{json}");
    let html = std::fs::read_to_string(&page).expect("the page");
    assert_self_contained(&html);
    // Before any browser: the page as written has one arrow per segment, no band (nothing
    // this small is folded), a waterfall row per call and a diagram per connection.
    assert_eq!(html.matches("<g class=\"seg ").count() as u64, segments);
    assert_eq!(html.matches("<g class=\"band\"").count(), 0);
    // A waterfall row per call of the API-call scenarios (three each, and the staggered
    // row's 100), each with its handshake or request bar.
    let calls: u64 = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !quic(s) && !s["call_us"].is_null())
        .map(|s| s["requests"].as_u64().expect("requests"))
        .sum();
    assert_eq!(calls, 3 * (n as u64 - 2) + 100);
    let calls = calls as usize;
    assert_eq!(html.matches(" · connection ").count(), calls);
    assert!(html.matches("<rect class=\"bar\"").count() >= calls);
    assert!(html.matches("<svg class=\"ladder\"").count() >= n);
    assert_eq!(html.matches("<svg class=\"waterfall\"").count(), n - 1);
    for s in doc["scenarios"].as_array().unwrap() {
        assert!(html.contains(&format!(">{}</a>", s["name"].as_str().unwrap())));
    }

    let Some(bin) = chromium(test) else {
        return;
    };
    // The DOM after the page's script ran, and its console.
    let dom = run_chromium(&bin, &work, &page, &["--dump-dom"]);
    assert!(dom.status.success(), "chromium --dump-dom failed");
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let console = console_lines(&dom.stderr);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    assert!(dom_text.contains("synack demo"), "{dom_text:.300}");
    let arrows = dom_text.matches("<g class=\"seg ").count() as u64;
    let bands: u64 = dom_text
        .split("<g class=\"band\" data-segments=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(arrows, segments, "one arrow per segment of the run");
    assert_eq!(bands, 0);

    // A screenshot, not blank.
    let shot = work.join("demo.png");
    let out = run_chromium(
        &bin,
        &work,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2400",
            "--hide-scrollbars",
        ],
    );
    assert!(out.status.success(), "chromium --screenshot failed");
    let console = console_lines(&out.stderr);
    assert!(
        console.is_empty(),
        "console messages:\n{}",
        console.join("\n")
    );
    let size = std::fs::metadata(&shot).expect("the screenshot").len();
    let (w, h, colours) = png_stats(&shot);
    assert_eq!((w, h), (1200, 2400));
    assert!(size > 50_000, "a {size}-byte screenshot");
    assert!(colours > 20, "{colours} colours: blank?");
    println!("{test}: screenshot {} ({size} bytes)", shot.display());
}

#[test]
fn trace_report_of_a_demo_capture() {
    let test = "trace_report_of_a_demo_capture";
    let work = dir(test);
    let pcap = work.join("d.pcap");
    let pcap_s = pcap.to_str().expect("UTF-8 path");
    synack(&[
        "demo", "--calls", "2", "--bytes", "128KiB", "--loss", "2%", "--seed", "2", "--pcap",
        pcap_s,
    ]);
    let page = work.join("trace.html");
    let page_s = page.to_str().expect("UTF-8 path");
    // The keep-alive scenario's capture: one connection, two requests.
    let ka = work.join("d-keepalive.pcap");
    let text = synack(&["trace", ka.to_str().unwrap(), "--html", page_s]);
    let json: Value = serde_json::from_str(&synack(&["trace", ka.to_str().unwrap(), "--json"]))
        .expect("trace JSON");
    let html = std::fs::read_to_string(&page).expect("the page");
    assert_self_contained(&html);
    assert_eq!(json["connections"].as_array().unwrap().len(), 1);
    assert_eq!(json["connections"][0]["http1_requests"], 2);
    assert_eq!(html.matches("<svg class=\"ladder\"").count(), 1);
    // The tables as the text has them.
    assert!(text.contains("per host pair"));
    assert!(html.contains("per host pair"));
    assert!(html.contains("GET /bytes/1024 HTTP/1.1"));
    // Arrows and bands stand for every segment the capture holds, unless rows were left
    // out (they are then said in the diagram).
    let c = &json["connections"][0];
    let segments = c["client_to_server"]["segments"].as_u64().unwrap()
        + c["server_to_client"]["segments"].as_u64().unwrap();
    let arrows = html.matches("<g class=\"seg ").count() as u64;
    let bands: u64 = html
        .split("<g class=\"band\" data-segments=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().parse::<u64>().unwrap())
        .sum();
    if !html.contains("… ") {
        assert_eq!(arrows + bands, segments, "{text}");
    }
    // The one-connection capture moved 128 KiB: its plots are there.
    let big = work.join("big.html");
    synack(&["trace", pcap_s, "--html", big.to_str().unwrap()]);
    let big_html = std::fs::read_to_string(&big).expect("the page");
    assert!(big_html.contains("bytes in flight, server → client"));
    assert!(big_html.contains("goodput, server → client"));

    let Some(bin) = chromium(test) else {
        return;
    };
    for p in [&page, &big] {
        let dom = run_chromium(&bin, &work, p, &["--dump-dom"]);
        assert!(dom.status.success());
        let console = console_lines(&dom.stderr);
        assert!(
            console.is_empty(),
            "console messages:\n{}",
            console.join("\n")
        );
        assert!(String::from_utf8_lossy(&dom.stdout).contains("synack trace"));
    }
}
