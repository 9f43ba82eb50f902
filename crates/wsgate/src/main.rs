//! `wsgate`: the binary is glue — parse, plan, run — over the library crates.

fn main() -> std::process::ExitCode {
    wsgate::run(std::env::args_os().collect())
}
