//! `cargo xtask`: setup, build, run, test, demo, bench.
mod bench;
mod bench_agent;
mod build;
mod demo;
mod deploy_check;
mod fuzz;
mod package;
mod setup;
mod test;
mod util;
mod vmtest;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tokenwatch's build and test tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (apt packages, bpf-linker, Python peers). Idempotent.
    Setup,
    /// Build the eBPF object, then the agent (release) with the object embedded.
    Build,
    /// Build, then run the agent as root: `cargo xtask run -- run -c FILE`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every test: unit, integration, eBPF end-to-end. Ends with a summary line.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The simulator + the agent: watch a client refresh and a fault get detected. Ctrl-C stops it.
    Demo(demo::Args),
    /// Benchmarks (criterion), reported as ratios against a baseline from the same run.
    Bench {
        /// Only the running agent against the simulator (idle cost, detection latency).
        #[arg(long)]
        agent_only: bool,
    },
    /// The libFuzzer targets (agent/fuzz), each for a bounded time from its seeds.
    Fuzz(fuzz::Args),
    /// Build the release binary and a Debian package (target/package/tokenwatch_*.deb).
    Package,
    /// The eBPF tests in qemu on Debian kernels (5.10, 6.1, 6.12, newest backports) and the host: one row per kernel.
    VmTest(vmtest::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => build::all(build::Profile::Release).map(|_| ()),
        Task::Run { args } => build::all(build::Profile::Release).and_then(|b| util::run_agent(&b, &args)),
        Task::Test { args } => test::run(&args),
        Task::Demo(args) => demo::run(args),
        Task::Bench { agent_only: false } => bench::run(),
        Task::Bench { agent_only: true } => bench_agent::run(),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Package => package::run(),
        Task::VmTest(args) => vmtest::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
