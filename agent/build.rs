//! Embeds the eBPF object built by `cargo xtask build`.
//!
//! xtask builds `tokenwatch-ebpf` for `bpfel-unknown-none` with Debian's
//! rustc (the only one here with a `core` for that target) and passes the
//! object's path in `TOKENWATCH_EBPF_OBJ`. Without it (a plain `cargo build`)
//! an empty object is embedded and the eBPF source reports itself as failed
//! with a clear reason instead of the build breaking.
use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=TOKENWATCH_EBPF_OBJ");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("tokenwatch.bpf.o");
    match env::var_os("TOKENWATCH_EBPF_OBJ") {
        Some(src) => {
            let src = PathBuf::from(src);
            println!("cargo:rerun-if-changed={}", src.display());
            fs::copy(&src, &out)
                .unwrap_or_else(|e| panic!("copying eBPF object {}: {e}", src.display()));
        }
        None => fs::write(&out, b"").expect("writing empty eBPF object"),
    }
}
