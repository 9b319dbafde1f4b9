#!/usr/bin/env bash
# The shell steps of action.yml (the composite GitHub Action), kept here so the tests run them.
#
#   scripts/action.sh install   install auditai for $AUDITAI_PROFILE (verifier, anchorer or
#                               trainer) from $AUDITAI_REPOSITORY at $AUDITAI_VERSION (a tag,
#                               branch or commit), unless an `auditai` of that version is already
#                               on the PATH (a cache hit); AUDITAI_DRY_RUN=1 prints the command
#   scripts/action.sh run       run `auditai $AUDITAI_ARGS` (split on whitespace), with the
#                               signing and anchor keys from AUDITAI_SIGNING_KEY and
#                               AUDITAI_ANCHOR_KEY when they are not empty; its exit code is the
#                               step's
set -euo pipefail

profile_flags() {
  case "${AUDITAI_PROFILE:-verifier}" in
    verifier) echo "--no-default-features" ;;
    anchorer) echo "--no-default-features --features anchor" ;;
    trainer) echo "" ;;
    *) echo "action: profile must be verifier, anchorer or trainer, not '${AUDITAI_PROFILE}'" >&2; return 2 ;;
  esac
}

install() {
  local flags source
  flags="$(profile_flags)"
  if [ -d "${AUDITAI_REPOSITORY:?AUDITAI_REPOSITORY names where auditai is installed from}" ]; then
    source="--path $AUDITAI_REPOSITORY"
  else
    source="--git $AUDITAI_REPOSITORY --rev ${AUDITAI_VERSION:?AUDITAI_VERSION names a tag, branch or commit}"
  fi
  local cmd="cargo install --locked ${flags:+$flags }$source auditai"
  if [ -n "${AUDITAI_DRY_RUN:-}" ]; then
    echo "$cmd"
    return
  fi
  if command -v auditai > /dev/null && [ -f "$HOME/.cargo/auditai-installed" ] \
    && [ "$(cat "$HOME/.cargo/auditai-installed")" = "$cmd" ]; then
    echo "auditai $(auditai --version | cut -d' ' -f2) already installed ($AUDITAI_PROFILE)"
    return
  fi
  # shellcheck disable=SC2086 # the flags are words
  $cmd
  mkdir -p "$HOME/.cargo"
  echo "$cmd" > "$HOME/.cargo/auditai-installed"
}

run() {
  local bin="${AUDITAI_BIN:-auditai}" args
  # Empty inputs (no secret configured) are not keys: unset them rather than pass "".
  [ -n "${AUDITAI_SIGNING_KEY:-}" ] || unset AUDITAI_SIGNING_KEY
  [ -n "${AUDITAI_ANCHOR_KEY:-}" ] || unset AUDITAI_ANCHOR_KEY
  read -ra args <<< "${AUDITAI_ARGS:?AUDITAI_ARGS is the auditai command line to run}"
  exec "$bin" "${args[@]}"
}

case "${1:-}" in
  install) install ;;
  run) run ;;
  *) echo "usage: scripts/action.sh install|run" >&2; exit 2 ;;
esac
