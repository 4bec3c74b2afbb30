#!/usr/bin/env bash
# The test command: formatting, lints, unit tests and the integration tests
# that run the burrow binary as an unprivileged user.
#
#   scripts/test.sh [CARGO_TEST_ARGS...]     e.g. scripts/test.sh lifecycle -- --nocapture
#
# As root (CI, a fresh machine) it first prepares the machine like a normal
# distribution (scripts/setup-host.sh): packages, the users `burrow-test`
# (with subordinate ids) and `burrow-nosub` (without), /dev/fuse and
# /dev/net/tun open to users. The test harness then drops to those users for
# every burrow invocation; burrow itself never runs as root here.
# As a normal user it runs the same tests as that user; tests whose needs the
# machine does not meet print `skipped: <reason>`.
#
# Environment:
#   CI=true                  sets BURROW_TEST_MUST_RUN=1: a test that would be
#                            skipped fails instead
#   BURROW_TEST_MUST_RUN=1   the same, by hand
#   BURROW_TEST_KEEP=1       keep each test's folder (under /tmp/bt-PID/)
#   BURROW_TEST_USER, BURROW_TEST_NOSUB_USER
#                            other users for the tests to run burrow as (root only)
#   RUST_TEST_THREADS        tests at once (default 4: they mostly wait)
#   SKIP_LINT=1              skip `cargo fmt --check` and clippy
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# cargo may live in ~/.cargo/bin without being on PATH (a non-login shell, CI).
if ! command -v cargo >/dev/null 2>&1; then
    for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
        [[ -x $d/cargo ]] && PATH=$d:$PATH && break
    done
fi
command -v cargo >/dev/null 2>&1 || {
    echo "test.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
}

if [[ $(id -u) == 0 ]]; then
    log "preparing the machine (packages, test users, devices)"
    scripts/setup-host.sh
fi

locked=()
if [[ ${CI:-} == true ]]; then
    export BURROW_TEST_MUST_RUN=1
    # CI builds exactly the committed Cargo.lock.
    locked=(--locked)
fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The integration tests mostly wait on containers: run more of them at once than cores.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}

failed=()
step() {
    local name=$1; shift
    log "$name"
    if ! "$@"; then
        failed+=("$name")
    fi
}

# Installs a rustup component when it is missing. Returns 1 when it cannot.
have_component() {
    local tool=$1 component=$2
    cargo "$tool" --version >/dev/null 2>&1 && return 0
    command -v rustup >/dev/null 2>&1 && rustup component add "$component" >/dev/null 2>&1 &&
        cargo "$tool" --version >/dev/null 2>&1
}

log "building (cargo build, cargo test --no-run)"
cargo build "${locked[@]}"
cargo test "${locked[@]}" --no-run

step "cargo test" cargo test "${locked[@]}" --no-fail-fast "$@"

if [[ ${SKIP_LINT:-} != 1 ]]; then
    if have_component fmt rustfmt; then
        step "cargo fmt --check" cargo fmt --check
    else
        echo "test.sh: rustfmt is not installed and rustup could not add it: skipping the format check" >&2
    fi
    if have_component clippy clippy; then
        step "cargo clippy" cargo clippy "${locked[@]}" --all-targets -- -D warnings
    else
        echo "test.sh: clippy is not installed and rustup could not add it: skipping lints" >&2
    fi
fi

if [[ ${#failed[@]} != 0 ]]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all passed"
