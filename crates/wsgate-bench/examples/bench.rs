//! Runs `wsgate bench` outside the main binary, for trying and measuring the crate:
//!
//! ```text
//! cargo run --release -p wsgate-bench --example bench -- echo ws://127.0.0.1:9000 -c 64 -n 20000
//! ```
//!
//! `--threads N` (before the subcommand) sets the runtime's worker threads.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use wsgate_bench::{BenchCommand, print_summary, run};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "wsgate's load generator")]
struct Cli {
    /// Runtime worker threads [default: one per core].
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: BenchCommand,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        rt.worker_threads(n.max(1));
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let json = cli.cmd.json();
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let on_ctrl_c = shutdown.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        match run(cli.cmd, shutdown).await {
            Ok(summary) => {
                print_summary(&summary, json);
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(if e.is_usage() { 64 } else { 1 })
            }
        }
    })
}
