//! The `auditai` binary: a thin shell over the library; see `cli` for commands and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
