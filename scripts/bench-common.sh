# Sourced by the bench scripts: stop on errors, run from the repository root, and build the
# release binary into $bin.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditai/target}"
cargo build --release --locked --quiet
bin="$CARGO_TARGET_DIR/release/auditai"
