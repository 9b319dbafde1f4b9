//! The `auditai` binary: a thin shell over the library; see `cli` for commands and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // burn materialises restored optimizer state on its default device, which prefers wgpu
        // and panics where no adapter exists. Pin the default to the CPU; auditai always names
        // its training device explicitly. SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
        && std::env::var_os("MESA_VK_DEVICE_SELECT").is_none()
    {
        // Mesa's Vulkan device-select layer asks the Wayland session which GPU to prefer, and
        // without a session it prints `XDG_RUNTIME_DIR is invalid or not set` four times on a
        // successful run. With no session there is no preference to read: skip the layer.
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    cli::main()
}
