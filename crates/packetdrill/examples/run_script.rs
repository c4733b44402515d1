fn main() {
    let p = std::env::args().nth(1).unwrap();
    match synack_packetdrill::script::run_file(std::path::Path::new(&p), &Default::default()) {
        Ok(r) => println!("ok {r:?}"),
        Err(e) => println!("FAIL {e}"),
    }
}
