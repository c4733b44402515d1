//! `synack listen/connect/serve/get` over TUN warn when run in the host's own network
//! namespace: the check itself, inside and outside a namespace the test makes (root needed:
//! skipped with a message otherwise, failed when CI=true).

mod tun_support;

use synack_stack::net::nc::in_root_netns;
use tun_support::{privileged, Netns};

#[test]
fn the_root_namespace_is_told_from_one_of_our_own() {
    if !privileged("the_root_namespace_is_told_from_one_of_our_own") {
        return;
    }
    let here = in_root_netns();
    let ns = Netns::new("detect");
    let inside = ns.run(in_root_netns);
    assert!(!inside, "a namespace of our own is not the root one");
    // The test process itself runs in the host's namespace (or a container's own root).
    assert!(here, "the test runs in the root namespace");
}
