//! The connect probe's cost for processes tokenwatch does not watch:
//! `connect()` + `close()` on an unrelated Unix socket, first with no probe,
//! then with the agent's probes attached (watching another path), in one run.
//! `cargo xtask bench` prints the ratio.
use std::{
    os::unix::net::{UnixListener, UnixStream},
    time::Duration,
};

use criterion::{criterion_group, criterion_main, Criterion};
use tokenwatch::sources::{ebpf::EbpfSource, Health, SourceState};

fn connect_loop(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let unrelated = dir.path().join("unrelated.sock");
    let listener = UnixListener::bind(&unrelated).unwrap();
    // accept and drop, so the backlog never fills
    std::thread::spawn(move || for s in listener.incoming() { drop(s) });

    let mut g = c.benchmark_group("connect_unrelated");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("agent_off", |b| b.iter(|| drop(UnixStream::connect(&unrelated).unwrap())));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let watched = dir.path().join("token-agent.sock");
    match EbpfSource::load(&watched) {
        Ok(source) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
            let health = Health::new(SourceState::Starting, "bench");
            rt.spawn(source.run(tx, health.clone()));
            rt.spawn(async move { while rx.recv().await.is_some() {} });
            g.bench_function("agent_on", |b| b.iter(|| drop(UnixStream::connect(&unrelated).unwrap())));
            assert_eq!(health.get().events, 0, "the unrelated socket must never be reported");
        }
        Err(e) => eprintln!("connect_unrelated/agent_on not measured: the probes did not load: {e}"),
    }
    g.finish();
}

criterion_group!(benches, connect_loop);
criterion_main!(benches);
