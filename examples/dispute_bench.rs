//! For `scripts/bench-dispute.sh`: turn a copy of an honest run into a cheater's run that skips
//! one training step and trains on from there, re-signed with the cheater's key, so that a
//! dispute has something to find.
//!
//! Usage: `cargo run --release --example dispute_bench -- RUN_DIR ROOT ENTRY STEP KEY`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/cli/forge.rs"]
mod forge;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let [_, dir, root, entry, step, key] = a.as_slice() else {
        eprintln!("usage: dispute_bench RUN_DIR ROOT ENTRY STEP KEY");
        std::process::exit(2);
    };
    let key = auditai::sign::SecretKey::read(std::path::Path::new(key)).expect("the key");
    forge::cheat(
        std::path::Path::new(dir),
        std::path::Path::new(root),
        entry.parse().expect("ENTRY"),
        step.parse().expect("STEP"),
        &key,
    );
}
