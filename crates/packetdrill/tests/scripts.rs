//! Every `tests/packetdrill/*.pkt` script of the workspace, run by our own runner
//! (`synack_packetdrill::script`) through the shared object's function table.

use std::path::{Path, PathBuf};

use synack_packetdrill::script::{run_file, Options};

/// Scripts that fail because synack's TCP (not the shim) behaves otherwise than a Linux-like
/// TCP the script describes: (file, the error they must fail with, why). A failure with any
/// other error fails the test; a pass is reported (XPASS) and means the entry can go — it does
/// not fail the test, so that fixing synack-tcp does not break this crate's tests.
const EXPECTED_TO_FAIL: &[(&str, &str, &str)] = &[];

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/packetdrill")
}

fn scripts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(scripts_dir())
        .expect("tests/packetdrill exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pkt"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_script() {
    let all = scripts();
    assert!(
        all.len() >= 10,
        "expected the scripts in {}",
        scripts_dir().display()
    );
    let mut failures = Vec::new();
    let mut passed = 0;
    for path in &all {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let xfail = EXPECTED_TO_FAIL.iter().find(|(n, _, _)| *n == name);
        match (run_file(path, &Options::default()), xfail) {
            (Ok(r), None) => {
                passed += 1;
                println!("ok    {name}: {} events", r.events);
            }
            (Err(e), Some((_, want, why))) if e.contains(want) => {
                println!("xfail {name}: {why}")
            }
            (Err(e), Some((_, want, _))) => failures.push(format!(
                "{name} failed otherwise than expected ({want:?}):\n{e}"
            )),
            (Ok(r), Some(_)) => {
                passed += 1;
                println!(
                    "XPASS {name}: {} events; synack-tcp now behaves as the script expects: \
                     remove it from EXPECTED_TO_FAIL",
                    r.events
                );
            }
            (Err(e), None) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let xfail_present = EXPECTED_TO_FAIL
        .iter()
        .filter(|(n, _, _)| all.iter().any(|p| p.ends_with(n)))
        .count();
    assert_eq!(
        xfail_present,
        EXPECTED_TO_FAIL.len(),
        "an expected-to-fail script is missing"
    );
    assert!(passed >= all.len() - EXPECTED_TO_FAIL.len());
}

/// The runner itself must catch wrong expectations, not only pass right ones.
#[test]
fn the_runner_rejects_what_did_not_happen() {
    let base = "\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
";
    let cases = [
        // Wrong option value.
        (
            "+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>",
            "option Wscale(7) differs",
        ),
        // Wrong option order.
        (
            "+0 > S. 0:0(0) ack 1 <nop,nop,sackOK,mss 1460,nop,wscale 5>",
            "differs",
        ),
        // Wrong ack.
        (
            "+0 > S. 0:0(0) ack 2 <mss 1460,nop,nop,sackOK,nop,wscale 5>",
            "ack 1 expected 2",
        ),
        // Wrong time: the SYN-ACK goes out at once, not 0.1 s later.
        (
            "+.1 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 5>",
            "timing error",
        ),
        // Wrong window.
        (
            "+0 > S. 0:0(0) ack 1 win 1000 <mss 1460,nop,nop,sackOK,nop,wscale 5>",
            "win 65535 expected 1000",
        ),
        // A call that fails otherwise.
        (
            "+0 accept(3, ..., ...) = -1 EAGAIN (Resource temporarily unavailable)",
            "blocked, but the script does not mark it blocking",
        ),
        ("+0 close(7) = 0", "close returned -1 EBADF, expected 0"),
        // Unacknowledged, the SYN-ACK is the next thing to go out again (after the RTO).
        (
            "+0 > S. 0:0(0) ack 1 <...>\n+0 > . 1:1(0) ack 1",
            "flags S. expected .",
        ),
    ];
    for (tail, want) in cases {
        let script = format!("{base}{tail}\n");
        match synack_packetdrill::script::run(&script, &Options::default()) {
            Ok(_) => panic!("{tail:?} passed"),
            Err(e) => assert!(e.contains(want), "{tail:?}: {e}"),
        }
    }
}

#[test]
fn the_runner_reports_a_packet_that_never_comes() {
    let script = "\
0     < S 0:0(0) win 32792 <mss 1000>
+0    > R. 0:0(0) ack 1 win 0
+0    > R. 0:0(0) ack 1 win 0
";
    let e = synack_packetdrill::script::run(script, &Options::default()).unwrap_err();
    assert!(
        e.contains("line 3: expected an outbound packet, but the stack has nothing more to send"),
        "{e}"
    );
}
