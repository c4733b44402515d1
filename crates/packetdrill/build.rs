//! Compiles the C half of the ABI: the two variadic entries of the interface table
//! (`csrc/variadic.c`), which read their optional argument with `va_arg`.

fn main() {
    println!("cargo:rerun-if-changed=csrc/variadic.c");
    cc::Build::new()
        .file("csrc/variadic.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("synack_packetdrill_variadic");
}
