//! The `auditai` binary: a thin shell over the library; see `cli` for commands and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // burn materialises restored optimizer state on its default device, which prefers wgpu
        // and panics where no adapter exists. Pin the default to the CPU; auditai always names
        // its training device explicitly. SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    cli::main()
}
