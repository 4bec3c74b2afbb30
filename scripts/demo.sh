#!/usr/bin/env bash
# burrow in one command, on a fresh Debian or Ubuntu machine:
#
#   scripts/demo.sh
#
# 1. installs the few packages burrow needs (with sudo when not root),
# 2. builds burrow in release mode (needs Rust from rustup),
# 3. makes a 2 MB busybox image and imports it,
# 4. runs a web server in a container with its port 80 published on the
#    host's 127.0.0.1 (`-p`, through burrow's userspace network), fetches its
#    page, stops and removes it.
#
# burrow is rootless: run as root, this script still runs every burrow command
# as the unprivileged user `burrow-demo` (created with subordinate ids).
# DEMO_PORT changes the port (default 18080).
set -euo pipefail
cd "$(dirname "$0")/.."

port=${DEMO_PORT:-18080}
say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# --- 1. the machine ---------------------------------------------------------
if [[ $(id -u) == 0 ]]; then
    say "preparing the machine (packages, the user burrow-demo)"
    scripts/setup-host.sh --demo
    demo_user=burrow-demo
else
    demo_user=$(id -un)
    missing=()
    for p in uidmap busybox-static; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [[ ${#missing[@]} != 0 ]]; then
        say "installing ${missing[*]} (sudo)"
        sudo apt-get update -qq
        sudo apt-get install -y -qq "${missing[@]}"
    fi
    if ! grep -q "^$demo_user:" /etc/subuid 2>/dev/null; then
        echo "note: $demo_user has no range in /etc/subuid: burrow will map only your own id" >&2
    fi
fi

# --- 2. the build -----------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
    for d in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
        [[ -x $d/cargo ]] && PATH=$d:$PATH && break
    done
fi
command -v cargo >/dev/null 2>&1 || die "Rust is not installed: get it from https://rustup.rs, then run me again"
say "building burrow (cargo build --release)"
cargo build --release --quiet
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/burrow
[[ -x $bin ]] || die "the build did not produce $bin"

work=$(mktemp -d /tmp/burrow-demo.XXXXXX)
cleanup_work() { rm -rf "$work"; }
trap cleanup_work EXIT
if [[ $(id -u) == 0 ]]; then
    # The build lives where burrow-demo cannot reach (/root is 0700): hand it a copy.
    chmod 0755 "$work"
    install -m 0755 "$bin" "$work/burrow"
    bin=$work/burrow
fi

# Runs burrow as the demo user.
burrow() {
    if [[ $(id -u) == 0 ]]; then
        setpriv --reuid="$demo_user" --regid="$demo_user" --init-groups --reset-env "$bin" "$@"
    else
        "$bin" "$@"
    fi
}

# --- 3. the image -----------------------------------------------------------
say "making a busybox image and importing it"
scripts/mkimage-busybox.sh "$work/busybox.tar"
chmod 0644 "$work/busybox.tar"
burrow import "$work/busybox.tar" busybox
burrow images

# --- 4. a web server --------------------------------------------------------
fetch() {
    if command -v curl >/dev/null 2>&1; then curl -fsS "$1"
    elif command -v wget >/dev/null 2>&1; then wget -qO- "$1"
    else busybox wget -qO- "$1"
    fi
}

burrow rm -f demo-web >/dev/null 2>&1 || true
cleanup() { burrow rm -f demo-web >/dev/null 2>&1 || true; cleanup_work; }
trap cleanup EXIT

say "burrow run -d --name demo-web -p 127.0.0.1:$port:80 busybox httpd -f -p 80 -h /var/www"
burrow run -d --name demo-web -p "127.0.0.1:$port:80" busybox httpd -f -p 80 -h /var/www
burrow ps
burrow port demo-web

say "fetching http://127.0.0.1:$port/"
page=
for _ in $(seq 50); do
    page=$(fetch "http://127.0.0.1:$port/" 2>/dev/null) && break
    sleep 0.2
done
[[ -n $page ]] || { burrow logs demo-web >&2 || true; die "the web server did not answer on port $port"; }
printf '%s\n' "$page"

say "stopping and removing the container"
burrow stop demo-web
burrow rm demo-web
trap cleanup_work EXIT
say "done: burrow ran a web server without root"
