#!/usr/bin/env bash
# Container start benchmark: time from command to exit of
#   burrow run --rm busybox true
# against Podman (runc, its default rootless network slirp4netns, overlay
# storage; vfs storage as a second row) and bwrap
# (the floor: namespaces + pivot into the same rootfs, nothing else), plus a
# bare rootless runc number. Runs are interleaved (burrow, podman, podman-vfs,
# bwrap, runc, burrow, ...), RUNS rounds (default 20), each after one untimed warm-up;
# prints a markdown table of medians and the ratios burrow/podman and
# burrow/bwrap.
#
# Usage:
#   sudo scripts/bench/start.sh            # as root: sets up user burrow-bench and re-runs as it
#   scripts/bench/start.sh                 # as an unprivileged user with podman etc. ready
# Environment (through sudo: sudo RUNS=5 BURROW=PATH scripts/bench/start.sh):
#   BURROW=PATH     burrow binary to measure (default: cargo build --release, copied out)
#   RUNS=N          rounds (default 20)
#   BENCH_USER=NAME unprivileged user when started as root (default burrow-bench)
#   BENCH_DIR=DIR   scratch folder (default /tmp/burrow-bench as root, /tmp/burrow-bench-UID otherwise)
#   NO_RUNC=1       leave out the bare runc row
#
# A missing or failing burrow is reported as n/a with its error; the peers are
# still measured.
set -euo pipefail

RUNS=${RUNS:-20}
BENCH_USER=${BENCH_USER:-burrow-bench}
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
SELF=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SELF")

case $RUNS in ''|*[!0-9]*) echo "start.sh: RUNS must be a number" >&2; exit 2;; esac
if (( RUNS < 1 || RUNS > 1000 )); then echo "start.sh: RUNS must be 1..1000" >&2; exit 2; fi

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'start.sh: %s\n' "$*" >&2; exit 1; }

need_tools() {
    local missing=()
    for t in podman runc slirp4netns fuse-overlayfs newuidmap newgidmap bwrap python3 tar; do
        PATH=$SAFE_PATH command -v "$t" >/dev/null || missing+=("$t")
    done
    if (( ${#missing[@]} )); then
        die "missing: ${missing[*]} (apt-get install podman runc slirp4netns fuse-overlayfs uidmap bubblewrap python3)"
    fi
}

# A busybox rootfs tarball from the host's busybox-static: the binary, one
# symlink per applet, a minimal passwd/group. Uses the project's image script
# when it exists.
make_image() {
    local out=$1 repo
    repo=$(cd "$HERE/../.." && pwd)
    if [[ -x $repo/scripts/mkimage-busybox.sh ]]; then
        log "image: $repo/scripts/mkimage-busybox.sh $out"
        "$repo/scripts/mkimage-busybox.sh" "$out" >&2
        return
    fi
    local bb
    bb=$(PATH=$SAFE_PATH command -v busybox) || die "no busybox (apt-get install busybox-static)"
    file -L "$bb" 2>/dev/null | grep -q 'statically linked' || ldd "$bb" 2>&1 | grep -q 'not a dynamic' \
        || die "$bb is not static (apt-get install busybox-static)"
    log "image: inline from $bb"
    local d
    d=$(mktemp -d)
    mkdir -p "$d"/{bin,etc,proc,sys,dev,tmp,root,var,run}
    chmod 1777 "$d/tmp"
    cp "$bb" "$d/bin/busybox"
    local a
    for a in $("$bb" --list); do
        [[ $a == busybox ]] || ln -s busybox "$d/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$d/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
    tar --numeric-owner --owner=0 --group=0 -C "$d" -cf "$out" .
    rm -rf "$d"
}

# ---------------------------------------------------------------- as root
as_root() {
    need_tools
    command -v runuser >/dev/null || die "no runuser"

    # Rootless podman needs these; Debian ships them 0600 on this kind of machine.
    local dev
    for dev in /dev/fuse /dev/net/tun; do
        if [[ -c $dev && $(stat -c %a "$dev") != 666 ]]; then
            log "chmod 0666 $dev (was $(stat -c %a "$dev"))"
            chmod 0666 "$dev"
        fi
    done

    if ! id "$BENCH_USER" >/dev/null 2>&1; then
        log "useradd $BENCH_USER"
        useradd -m -s /bin/bash "$BENCH_USER"
    fi
    grep -q "^$BENCH_USER:" /etc/subuid || die "$BENCH_USER has no /etc/subuid range (usermod --add-subuids)"
    grep -q "^$BENCH_USER:" /etc/subgid || die "$BENCH_USER has no /etc/subgid range (usermod --add-subgids)"

    BENCH_DIR=${BENCH_DIR:-/tmp/burrow-bench}
    if [[ -L $BENCH_DIR ]]; then die "$BENCH_DIR is a symlink"; fi
    mkdir -p "$BENCH_DIR"
    [[ $(stat -c %u "$BENCH_DIR") == 0 ]] || die "$BENCH_DIR is not owned by root"
    chmod 0755 "$BENCH_DIR"

    # burrow: the given binary, or a release build, copied where the user can
    # read it (cargo's target dir is under /root, mode 0700).
    local burrow_err=""
    rm -f "$BENCH_DIR/burrow"
    if [[ -n ${BURROW:-} ]]; then
        if [[ -f $BURROW ]]; then install -m 0755 "$BURROW" "$BENCH_DIR/burrow"
        else burrow_err="BURROW=$BURROW does not exist"; fi
    else
        local repo cargo
        repo=$(cd "$HERE/../.." && pwd)
        local target=${CARGO_TARGET_DIR:-$repo/target}
        if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
            # Under sudo: build as the invoking user, with their toolchain, so
            # target/ does not fill with root-owned files.
            log "cargo build --release in $repo (as $SUDO_USER)"
            if runuser -u "$SUDO_USER" -- bash -lc 'cd "$1" && cargo build --release --bin burrow' _ "$repo" >&2; then
                install -m 0755 "$target/release/burrow" "$BENCH_DIR/burrow"
            else
                burrow_err="cargo build --release failed (as $SUDO_USER)"
            fi
        elif cargo=$(command -v cargo || ls "$HOME/.cargo/bin/cargo" 2>/dev/null); then
            # sudo's secure_path leaves ~/.cargo/bin out, hence the fallback.
            log "cargo build --release in $repo"
            if (cd "$repo" && "$cargo" build --release --bin burrow >&2); then
                install -m 0755 "$target/release/burrow" "$BENCH_DIR/burrow"
            else
                burrow_err="cargo build --release failed"
            fi
        else
            burrow_err="no cargo found (set BURROW=PATH)"
        fi
    fi

    make_image "$BENCH_DIR/busybox.tar"
    chmod 0644 "$BENCH_DIR/busybox.tar"
    install -m 0755 "$SELF" "$BENCH_DIR/start.sh"
    install -m 0755 "$HERE/interleave.py" "$BENCH_DIR/interleave.py"
    mkdir -p "$BENCH_DIR/state"
    chown "$BENCH_USER:" "$BENCH_DIR/state"
    chmod 0700 "$BENCH_DIR/state"

    local home
    home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
    cd /
    exec runuser -u "$BENCH_USER" -- env -i \
        HOME="$home" USER="$BENCH_USER" LOGNAME="$BENCH_USER" PATH="$SAFE_PATH" LANG=C.UTF-8 \
        RUNS="$RUNS" BENCH_DIR="$BENCH_DIR" BURROW_ERR="$burrow_err" NO_RUNC="${NO_RUNC:-}" \
        BENCH_PREPARED=1 \
        bash "$BENCH_DIR/start.sh"
}

# ---------------------------------------------------------------- as the user
broot="" brun=""
as_user() {
    export PATH=$SAFE_PATH:$PATH
    need_tools
    local burrow_err=${BURROW_ERR:-}
    if [[ -z ${BENCH_PREPARED:-} ]]; then
        BENCH_DIR=${BENCH_DIR:-/tmp/burrow-bench-$(id -u)}
        mkdir -p "$BENCH_DIR/state"
        chmod 0700 "$BENCH_DIR" "$BENCH_DIR/state"
        if [[ -n ${BURROW:-} ]]; then cp "$BURROW" "$BENCH_DIR/burrow" || burrow_err="cannot copy BURROW=$BURROW"
        elif command -v burrow >/dev/null; then cp "$(command -v burrow)" "$BENCH_DIR/burrow"
        elif [[ -x $HERE/../../target/release/burrow ]]; then cp "$HERE/../../target/release/burrow" "$BENCH_DIR/burrow"
        else burrow_err="no burrow binary (set BURROW=PATH)"; fi
        [[ -f $BENCH_DIR/busybox.tar ]] || make_image "$BENCH_DIR/busybox.tar"
        cp "$HERE/interleave.py" "$BENCH_DIR/interleave.py"
    fi
    local tarball=$BENCH_DIR/busybox.tar
    local state=$BENCH_DIR/state
    cd "$state"

    # bwrap and runc share one extracted rootfs.
    rm -rf "$state/rootfs" "$state/runc-bundle" "$state/runc-state"
    mkdir -p "$state/rootfs"
    tar -C "$state/rootfs" -xf "$tarball" --no-same-owner

    # burrow: a fresh store each time.
    local burrow_cmd=""
    broot=$(mktemp -d "$state/burrow-root.XXXXXX")
    brun=$(mktemp -d "$state/burrow-run.XXXXXX")
    # (podman unshare as a fallback for files owned by subordinate ids)
    trap 'rm -rf "$broot" "$brun" 2>/dev/null || podman unshare rm -rf "$broot" "$brun" 2>/dev/null || true' EXIT
    local B=$BENCH_DIR/burrow
    if [[ -z $burrow_err && ! -x $B ]]; then burrow_err="no burrow binary at $B"; fi
    if [[ -z $burrow_err ]]; then
        local out
        if out=$("$B" --root "$broot" --runroot "$brun" import "$tarball" busybox 2>&1); then
            burrow_cmd="$B --root $broot --runroot $brun run --rm busybox true"
        else
            burrow_err="import failed: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"
        fi
    fi

    # podman: runc, its default rootless network (slirp4netns), and overlay
    # storage (what Debian's containers-storage storage.conf selects; native
    # kernel overlay in the user namespace). Without that package Podman 4.3
    # falls back to vfs and pins it in its database, so each driver gets its
    # own store here, named on the command line; vfs is measured as well.
    local p_ovl="podman --root $state/podman-overlay/root --runroot $state/podman-overlay/run --storage-driver overlay --runtime runc"
    local p_vfs="podman --root $state/podman-vfs/root --runroot $state/podman-vfs/run --storage-driver vfs --runtime runc"
    local p
    for p in "$p_ovl" "$p_vfs"; do
        $p rmi -f busybox-bench >/dev/null 2>&1 || true
        $p import --change 'CMD ["/bin/sh"]' "$tarball" busybox-bench >/dev/null \
            || die "podman import failed: $p"
    done
    local podman_cmd="$p_ovl run --rm busybox-bench true"
    local podman_vfs_cmd="$p_vfs run --rm busybox-bench true"
    local bwrap_cmd="bwrap --unshare-all --bind $state/rootfs / --proc /proc --dev /dev true"

    # bare rootless runc (no network, no storage): the same rootfs, args "true".
    local runc_cmd=""
    if [[ -z ${NO_RUNC:-} ]]; then
        mkdir -p "$state/runc-bundle" "$state/runc-state"
        (cd "$state/runc-bundle" && runc spec --rootless)
        python3 - "$state/runc-bundle/config.json" "$state/rootfs" <<'EOF'
import json, sys
p, rootfs = sys.argv[1], sys.argv[2]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
c["root"] = {"path": rootfs, "readonly": False}
json.dump(c, open(p, "w"), indent=1)
EOF
        runc_cmd="runc --root $state/runc-state run --bundle $state/runc-bundle bench-$$"
    fi

    # ---- the machine
    echo "## Container start: \`run --rm busybox true\`, median of $RUNS interleaved runs"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM"
    echo "- kernel: $(uname -r); OS: $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- cgroups: $(if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then echo v2; elif [[ -d /sys/fs/cgroup/unified ]]; then echo hybrid; else echo v1; fi); user: $(id -un) (uid $(id -u))"
    echo "- $(podman --version); $(runc --version | head -1); $(bwrap --version); $(slirp4netns --version | head -1)"
    echo "- podman row: $($p_ovl info --format 'storage {{.Store.GraphDriverName}} (native overlay diff: {{index .Store.GraphStatus "Native Overlay Diff"}}, options: {{.Store.GraphOptions}}), runtime {{.Host.OCIRuntime.Name}}, rootless {{.Host.Security.Rootless}}, cgroups {{.Host.CgroupsVersion}}/{{.Host.CgroupManager}}' 2>/dev/null || echo 'info failed'); container links: $($p_ovl run --rm busybox-bench ip -o link 2>/dev/null | awk -F': ' '{print $2}' | tr '\n' ' ')"
    if [[ -z $burrow_err ]]; then
        echo "- burrow: $("$B" --version 2>&1 | head -1)"
    fi
    echo

    echo "\$S = $state, \$B = $BENCH_DIR"
    echo
    local args=(--runs "$RUNS" --json "$state/results.json" --sub "$state=\$S" --sub "$BENCH_DIR=\$B")
    if [[ -n $burrow_err ]]; then
        args+=(--na "burrow=$burrow_err" "burrow=$B run --rm busybox true")
    else
        args+=("burrow=$burrow_cmd")
    fi
    args+=("podman=$podman_cmd" "podman-vfs=$podman_vfs_cmd" "bwrap=$bwrap_cmd")
    [[ -n $runc_cmd ]] && args+=("runc=$runc_cmd")
    python3 "$BENCH_DIR/interleave.py" "${args[@]}"
    echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "Target: burrow <= 0.15x Podman."
}

if [[ $(id -u) == 0 ]]; then
    as_root
else
    as_user
fi
