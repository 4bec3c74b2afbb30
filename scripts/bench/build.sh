#!/usr/bin/env bash
# Build benchmark: the same small multi-step Dockerfile (FROM the busybox
# image; ENV, WORKDIR, two COPYs of a small context, three RUNs, CMD) built by
#   burrow build                 (its default RUN network)
#   podman build                 (rootless, runc, overlay storage in its own
#                                 --root/--runroot, its default RUN network)
# as the same unprivileged user, in two modes, each timed by
# scripts/bench/interleave.py (runs interleaved, one untimed warm-up each,
# median of RUNS, the ratio burrow/podman printed):
#   cold  --no-cache: every step runs again (the stores are fresh at the start
#         of the benchmark and hold only the base image)
#   warm  the cache is warm (the warm-up filled it): every step is a hit
#
# Usage:
#   sudo scripts/bench/build.sh     # as root: re-runs itself as burrow-bench
#   scripts/bench/build.sh          # as an unprivileged user with podman ready
# Environment (through sudo: sudo RUNS=9 BURROW=PATH scripts/bench/build.sh):
#   BURROW=PATH     burrow binary (default: target/release/burrow, built if missing)
#   RUNS=N          rounds (default 5)
#   BENCH_USER=NAME unprivileged user when started as root (default burrow-bench)
#   BENCH_DIR=DIR   scratch folder (default /tmp/burrow-bench-build as root,
#                   /tmp/burrow-bench-build-UID otherwise)
set -euo pipefail

RUNS=${RUNS:-5}
BENCH_USER=${BENCH_USER:-burrow-bench}
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")
REPO=$(cd "$HERE/../.." && pwd)

case $RUNS in ''|*[!0-9]*) echo "build.sh: RUNS must be a number" >&2; exit 2;; esac
if (( RUNS < 1 || RUNS > 100 )); then echo "build.sh: RUNS must be 1..100" >&2; exit 2; fi

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

need_tools() {
    local missing=() t
    for t in podman runc slirp4netns newuidmap newgidmap python3 tar; do
        PATH=$SAFE_PATH command -v "$t" >/dev/null || missing+=("$t")
    done
    (( ${#missing[@]} == 0 )) \
        || die "missing: ${missing[*]} (apt-get install podman runc slirp4netns uidmap python3)"
}

# The build context: a Dockerfile, a script and a folder of small files plus
# one of 1 MiB, so COPY has some bytes to hash and write.
make_context() {
    local ctx=$1 i
    rm -rf "$ctx"
    mkdir -p "$ctx/files/tmp"
    for i in $(seq 1 50); do printf 'file %s\n' "$i" >"$ctx/files/f$i.txt"; done
    head -c 1048576 /dev/urandom >"$ctx/files/blob.bin"
    echo scratch >"$ctx/files/tmp/junk"
    printf '#!/bin/sh\ncat /app/greeting\nls /app/data | wc -l\n' >"$ctx/app.sh"
    cat >"$ctx/Dockerfile" <<'EOF'
FROM busybox-bench
ENV APP=/app GREETING=hello
WORKDIR /app
COPY files/ /app/files/
RUN echo "$GREETING from $APP" > /app/greeting && mkdir -p /app/data
COPY app.sh /app/
RUN chmod +x /app/app.sh && ls -R /app > /app/manifest.txt
RUN for i in 1 2 3 4 5 6 7 8; do echo $i > /app/data/$i; done && rm -rf /app/files/tmp
CMD ["/app/app.sh"]
EOF
}

# ---------------------------------------------------------------- as root
as_root() {
    need_tools
    command -v runuser >/dev/null || die "no runuser"
    local dev
    for dev in /dev/fuse /dev/net/tun; do
        [[ -c $dev && $(stat -c %a "$dev") != 666 ]] && { log "chmod 0666 $dev"; chmod 0666 "$dev"; }
    done
    id "$BENCH_USER" >/dev/null 2>&1 || { log "useradd $BENCH_USER"; useradd -m -s /bin/bash "$BENCH_USER"; }
    grep -q "^$BENCH_USER:" /etc/subuid || die "$BENCH_USER has no /etc/subuid range"
    grep -q "^$BENCH_USER:" /etc/subgid || die "$BENCH_USER has no /etc/subgid range"

    BENCH_DIR=${BENCH_DIR:-/tmp/burrow-bench-build}
    [[ -L $BENCH_DIR ]] && die "$BENCH_DIR is a symlink"
    mkdir -p "$BENCH_DIR"
    [[ $(stat -c %u "$BENCH_DIR") == 0 ]] || die "$BENCH_DIR is not owned by root"
    chmod 0755 "$BENCH_DIR"

    # The user cannot reach target/ below /root (0700): copy the binary out.
    local bin=${BURROW:-$REPO/target/release/burrow}
    if [[ -z ${BURROW:-} && ! -x $bin ]]; then
        log "cargo build --release"
        (cd "$REPO" && cargo build --release --bin burrow >&2) || die "cargo build --release failed"
    fi
    [[ -x $bin ]] || die "no burrow binary at $bin"
    install -m 0755 "$bin" "$BENCH_DIR/burrow"
    "$REPO/scripts/mkimage-busybox.sh" "$BENCH_DIR/busybox.tar" >&2
    chmod 0644 "$BENCH_DIR/busybox.tar"
    install -m 0755 "$SELF" "$BENCH_DIR/build.sh"
    install -m 0755 "$HERE/interleave.py" "$BENCH_DIR/interleave.py"
    rm -rf "$BENCH_DIR/state"
    mkdir -p "$BENCH_DIR/state"
    chown "$BENCH_USER:" "$BENCH_DIR/state"
    chmod 0700 "$BENCH_DIR/state"

    local home
    home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
    cd /
    exec runuser -u "$BENCH_USER" -- env -i \
        HOME="$home" USER="$BENCH_USER" LOGNAME="$BENCH_USER" PATH="$SAFE_PATH" LANG=C.UTF-8 \
        RUNS="$RUNS" BENCH_DIR="$BENCH_DIR" BENCH_PREPARED=1 \
        bash "$BENCH_DIR/build.sh"
}

# ---------------------------------------------------------------- as the user
state=""
cleanup() {
    [[ -n $state ]] || return 0
    # Files owned by subordinate ids need a user namespace that maps them.
    podman unshare rm -rf "$state/burrow-root" "$state/burrow-run" \
        "$state/podman" 2>/dev/null || rm -rf "$state/burrow-root" "$state/burrow-run" 2>/dev/null || true
}

as_user() {
    export PATH=$SAFE_PATH:$PATH
    need_tools
    if [[ -z ${BENCH_PREPARED:-} ]]; then
        BENCH_DIR=${BENCH_DIR:-/tmp/burrow-bench-build-$(id -u)}
        mkdir -p "$BENCH_DIR/state"
        chmod 0700 "$BENCH_DIR"
        cp "${BURROW:-$REPO/target/release/burrow}" "$BENCH_DIR/burrow" \
            || die "no burrow binary (set BURROW=PATH or cargo build --release)"
        "$REPO/scripts/mkimage-busybox.sh" "$BENCH_DIR/busybox.tar" >&2
        cp "$HERE/interleave.py" "$BENCH_DIR/interleave.py"
    fi
    state=$BENCH_DIR/state
    trap cleanup EXIT
    cleanup
    cd "$state"
    make_context "$state/ctx"

    # Fresh stores holding only the base image, under the same name in both.
    local B="$BENCH_DIR/burrow --root $state/burrow-root --runroot $state/burrow-run"
    local P="podman --root $state/podman/root --runroot $state/podman/run --storage-driver overlay --runtime runc"
    $B import "$BENCH_DIR/busybox.tar" busybox-bench >/dev/null || die "burrow import failed"
    $P import --change 'CMD ["/bin/sh"]' "$BENCH_DIR/busybox.tar" busybox-bench >/dev/null \
        || die "podman import failed"

    echo "## Build: a 9-step Dockerfile (FROM busybox, ENV, WORKDIR, 2 COPY, 3 RUN, CMD), median of $RUNS interleaved runs"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- kernel: $(uname -r); OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- $(podman --version); $(runc --version | head -1); burrow: $("$BENCH_DIR/burrow" --version 2>&1 | head -1)"
    echo "- podman: $($P info --format 'storage {{.Store.GraphDriverName}} (native overlay diff: {{index .Store.GraphStatus "Native Overlay Diff"}}), runtime {{.Host.OCIRuntime.Name}}' 2>/dev/null || echo 'info failed')"
    echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "\$S = $state, \$B = $BENCH_DIR"
    echo
    local sub=(--sub "$state=\$S" --sub "$BENCH_DIR=\$B")
    echo "### Cold: \`build --no-cache\`"
    echo
    python3 "$BENCH_DIR/interleave.py" --runs "$RUNS" --json "$state/cold.json" "${sub[@]}" \
        "burrow=$B build -q --no-cache -t bench:1 $state/ctx" \
        "podman=$P build -q --no-cache --runtime runc -t bench:1 $state/ctx"
    echo
    echo "### Warm: \`build\` with every step cached"
    echo
    python3 "$BENCH_DIR/interleave.py" --runs "$RUNS" --json "$state/warm.json" "${sub[@]}" \
        "burrow=$B build -q -t bench:1 $state/ctx" \
        "podman=$P build -q --runtime runc -t bench:1 $state/ctx"
    echo
    # The images must do the same thing, or the times compare nothing.
    echo "- burrow's image prints: $($B run --rm bench:1 | tr '\n' ' ')"
    echo "- podman's image prints: $($P run --rm bench:1 | tr '\n' ' ')"
    echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Target: burrow <= 0.5x Podman, cold and warm."
}

if [[ $(id -u) == 0 ]]; then
    as_root
else
    as_user
fi
