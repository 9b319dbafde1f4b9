//! Records the toolchain that built auditai, for provenance manifests.

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    println!("cargo:rustc-env=AUDITAI_RUSTC_VERSION={}", version.trim());
    // burn's exact version, from the lock file this build used.
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let burn = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"burn\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=AUDITAI_BURN_VERSION={burn}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
}
