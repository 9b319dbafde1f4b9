#!/usr/bin/env bash
# Installs what auditai needs to build and test on Debian/Ubuntu: a C compiler, Mesa's Vulkan
# driver (wgpu runs on it without a GPU), git, openssl, npm, chromium (the test that renders
# `auditai report` headless), Slurm's controller, node daemon and client (the executor tests),
# python3 with venv (the example pipelines' stages; the CycloneDX
# project's validator in ~/.cache/auditai/venv, which the ML-BOM test uses), a Rust toolchain
# (rustup, if cargo is missing) and anvil, the local EVM chain the anchoring tests start
# (under ~/.cache/auditai/npm).
# Safe to run again: it installs only what is missing.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for p in mesa-vulkan-drivers libvulkan1; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v cc >/dev/null || missing+=(build-essential)
# strip (binutils) and dpkg-deb: the packaging test (scripts/package.sh).
command -v strip >/dev/null || missing+=(binutils)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
# Headless Chromium: the test that loads `auditai report`'s page and checks it renders cleanly.
command -v chromium >/dev/null || missing+=(chromium)
# Slurm 22.05: the executor tests run a two-node cluster on this machine (scripts/slurm-cluster.sh).
for p in slurmctld slurmd slurm-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
for cmd in curl git openssl npm python3; do
  command -v "$cmd" >/dev/null || missing+=("$cmd")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends ca-certificates "${missing[@]}"
fi

if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
fi

anvil_dir="$HOME/.cache/auditai/npm"
if [ ! -x "$anvil_dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" ]; then
  mkdir -p "$anvil_dir"
  (cd "$anvil_dir" && npm install --no-audit --no-fund --silent @foundry-rs/anvil-linux-amd64@1.7.1)
fi
# The reward tests: OpenZeppelin's Merkle tree library reads `auditai rewards` output, and solc-js
# compiles the test fixture fixtures/contracts/MerkleDistributor.sol.
if [ ! -x "$anvil_dir/node_modules/.bin/solcjs" ] || [ ! -d "$anvil_dir/node_modules/@openzeppelin/merkle-tree" ]; then
  (cd "$anvil_dir" && npm install --no-audit --no-fund --silent @foundry-rs/anvil-linux-amd64@1.7.1 @openzeppelin/merkle-tree@1.0.8 solc@0.8.31)
fi

venv="$HOME/.cache/auditai/venv"
if ! "$venv/bin/python" -c 'import cyclonedx.validation.json' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'cyclonedx-python-lib[json-validation]==11.12.0'
fi
