//! `connect-once PATH`: one AF_UNIX `connect()` to PATH, then exit.
//! Prints `pid=<pid> errno=<n>` (0 on success). Its comm is `connect-once`,
//! so eBPF tests can tell its connects from everyone else's.
use std::os::unix::net::UnixStream;

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: connect-once PATH");
        std::process::exit(2);
    };
    let errno = match UnixStream::connect(&path) {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    println!("pid={} errno={errno}", std::process::id());
}
