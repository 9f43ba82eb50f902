//! `wsgate bench echo|fanout|hold URL …` — load generation.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use wsgate_bench::BenchCommand;

pub fn exec(cmd: BenchCommand) -> ExitCode {
    let json = cmd.json();
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wsgate bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            s2.cancel();
        });
        match wsgate_bench::run(cmd, stop).await {
            Ok(summary) => {
                wsgate_bench::print_summary(&summary, json);
                let failures = summary.failures();
                if failures.is_empty() {
                    return ExitCode::SUCCESS;
                }
                eprintln!("wsgate bench: FAILED: {}", failures.join(", "));
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("wsgate bench: {e}");
                if e.is_usage() { ExitCode::from(crate::EXIT_USAGE) } else { ExitCode::FAILURE }
            }
        }
    })
}
