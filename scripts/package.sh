#!/usr/bin/env bash
# Release artifacts, signed by auditai itself.
#
#   scripts/package.sh            build the release binary (or take $RELEASE_BIN), then run
#                                 packaging/release.yaml: its one stage packs the artifacts below,
#                                 and the run signs a manifest whose subjects they are (key:
#                                 $RELEASE_KEY, a key file, or AUDITAI_SIGNING_KEY[_FILE]); then
#                                 write dist/auditai-release.bundle.json
#   scripts/package.sh artifacts  the stage itself: pack $RELEASE_BIN into
#                                 dist/auditai-linux-x86_64.tar.gz and dist/auditai-amd64.deb
#
# The tarball holds the binary, the man page, the completions, README, CHANGELOG and the
# licences; the .deb installs the binary in /usr/bin, the man page and the completions where
# Debian looks for them (the same files as Cargo.toml's [package.metadata.deb] for cargo-deb).
# Both are reproducible for a given binary and SOURCE_DATE_EPOCH (default: the last commit's time).
# PACKAGE_LEVEL (default 9) is the gzip and xz compression level; the tests use 1.
# A receiver checks a download with:
#   auditai verify auditai-release.bundle.json --key release.pub --artifact auditai-amd64.deb
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version() { grep -m1 '^version = ' Cargo.toml | cut -d'"' -f2; }

artifacts() {
  local bin="${RELEASE_BIN:?RELEASE_BIN names the binary to pack}" v name
  v="$(version)"
  export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"
  stage="$(mktemp -d)" # global: the EXIT trap reads it
  trap 'rm -rf "$stage"' EXIT
  mkdir -p dist
  "$bin" man > "$stage/auditai.1"

  name="auditai-$v-linux-x86_64"
  mkdir -p "$stage/$name/completions"
  install -m 755 "$bin" "$stage/$name/auditai"
  install -m 644 "$stage/auditai.1" README.md CHANGELOG.md LICENSE-MIT LICENSE-APACHE "$stage/$name/"
  install -m 644 completions/auditai.bash completions/_auditai completions/auditai.fish "$stage/$name/completions/"
  tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    -C "$stage" -cf - "$name" | gzip "-${PACKAGE_LEVEL:-9}" -n > dist/auditai-linux-x86_64.tar.gz.tmp
  mv dist/auditai-linux-x86_64.tar.gz.tmp dist/auditai-linux-x86_64.tar.gz

  local root="$stage/deb"
  install -D -m 755 "$bin" "$root/usr/bin/auditai"
  gzip -9n < "$stage/auditai.1" > "$stage/auditai.1.gz"
  install -D -m 644 "$stage/auditai.1.gz" "$root/usr/share/man/man1/auditai.1.gz"
  install -D -m 644 completions/auditai.bash "$root/usr/share/bash-completion/completions/auditai"
  install -D -m 644 completions/_auditai "$root/usr/share/zsh/vendor-completions/_auditai"
  install -D -m 644 completions/auditai.fish "$root/usr/share/fish/vendor_completions.d/auditai.fish"
  install -D -m 644 README.md "$root/usr/share/doc/auditai/README.md"
  install -D -m 644 LICENSE-MIT "$root/usr/share/doc/auditai/copyright"
  mkdir -p "$root/DEBIAN"
  cat > "$root/DEBIAN/control" <<EOF
Package: auditai
Version: $v
Architecture: amd64
Maintainer: auditai developers <auditai@users.noreply.github.com>
Depends: libc6 (>= 2.34)
Section: utils
Priority: optional
Description: auditable AI pipelines
 Train models from YAML pipeline specs, sign in-toto/SLSA provenance of data,
 code and weights, anchor digests on EVM chains and Bitcoin (OpenTimestamps),
 verify all of it and audit that training happened by replaying challenged
 segments.
EOF
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  dpkg-deb --root-owner-group -Zxz "-z${PACKAGE_LEVEL:-9}" --build "$root" dist/auditai-amd64.deb.tmp > /dev/null
  mv dist/auditai-amd64.deb.tmp dist/auditai-amd64.deb
}

release() {
  if [ -z "${RELEASE_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditai/target}"
    cargo build --release --locked --quiet
    RELEASE_BIN="$CARGO_TARGET_DIR/release/auditai"
  fi
  RELEASE_BIN="$(realpath "$RELEASE_BIN")"
  export RELEASE_BIN
  SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2> /dev/null || echo 0)}"
  export SOURCE_DATE_EPOCH
  export PACKAGE_LEVEL="${PACKAGE_LEVEL:-9}"
  local key=()
  if [ -n "${RELEASE_KEY:-}" ]; then
    key=(--key "$RELEASE_KEY")
  elif [ -z "${AUDITAI_SIGNING_KEY:-}${AUDITAI_SIGNING_KEY_FILE:-}" ]; then
    echo "scripts/package.sh: no signing key: set RELEASE_KEY (a key file) or AUDITAI_SIGNING_KEY[_FILE]" >&2
    exit 2
  fi
  "$RELEASE_BIN" run packaging/release.yaml --quiet "${key[@]}"
  rm -f dist/auditai-release.bundle.json
  "$RELEASE_BIN" bundle runs/auditai-release -o dist/auditai-release.bundle.json
}

case "${1:-}" in
  artifacts) artifacts ;;
  "") release ;;
  *) echo "usage: scripts/package.sh [artifacts]" >&2; exit 2 ;;
esac
