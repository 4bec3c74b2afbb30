#!/usr/bin/env bash
# Overlay benchmark: burrow's FUSE overlay against fuse-overlayfs, the kernel
# overlay (mounted in a user namespace, as rootless Podman does) and a plain
# folder (the limit), on the same workloads, as one unprivileged user.
#
#   scripts/bench/overlay.sh [BURROW_BIN]
#
# Workloads (each timed alone, on a fresh mount, median of $REPS runs):
#   create   unpack a tree of $FILES small files (tar x)
#   stat     stat and read every file of a lower layer holding $FILES files
#   write    write $MIB MiB sequentially and fsync
#   read     read it back (after dropping the mount's cache by remounting)
#   copyup   append one byte to each of 1000 lower 4 KiB files
# Prints seconds per driver and the ratio against fuse-overlayfs.
#
# Environment: REPS (5), FILES (10000), MIB (1024), DRIVERS ("plain burrow
# fuse-overlayfs kernel"), BENCH_DIR (a folder on the disk to measure,
# default /var/tmp/burrow-bench). As root, it re-runs itself as
# $BENCH_USER (burrow-test).
set -euo pipefail

REPS=${REPS:-5}
FILES=${FILES:-10000}
MIB=${MIB:-1024}
DRIVERS=${DRIVERS:-"plain burrow fuse-overlayfs kernel"}
BENCH_DIR=${BENCH_DIR:-/var/tmp/burrow-bench}
here=$(cd "$(dirname "$0")/../.." && pwd)
BURROW=${1:-${BURROW:-$here/target/release/burrow}}

if [[ $(id -u) == 0 ]]; then
    user=${BENCH_USER:-burrow-test}
    copy=/var/tmp/burrow-bench-bin
    install -m 0755 "$BURROW" "$copy"
    install -m 0755 "$0" /var/tmp/burrow-bench.sh
    exec runuser -u "$user" -- env REPS="$REPS" FILES="$FILES" MIB="$MIB" DRIVERS="$DRIVERS" \
        BENCH_DIR="$BENCH_DIR-$user" bash /var/tmp/burrow-bench.sh "$copy"
fi
[[ -x $BURROW ]] || { echo "overlay.sh: no burrow binary at $BURROW (cargo build --release)" >&2; exit 1; }

log() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
B=$BENCH_DIR

# The lower layer: $FILES small files in 100 folders, and 1000 4 KiB files.
log "preparing the lower layer and the tarball"
mkdir -p "$B/lower/small" "$B/lower/cu" "$B/src"
python3 - "$B" "$FILES" <<'EOF'
import os, sys
b, n = sys.argv[1], int(sys.argv[2])
for root in (f"{b}/lower/small", f"{b}/src"):
    for i in range(n):
        d = f"{root}/d{i % 100:02}"
        os.makedirs(d, exist_ok=True)
        with open(f"{d}/f{i}", "w") as f:
            f.write("x" * (i % 2000))
for i in range(1000):
    with open(f"{b}/lower/cu/f{i}", "wb") as f:
        f.write(b"y" * 4096)
EOF
tar -C "$B/src" -cf "$B/tree.tar" .
rm -rf "$B/src"

# mount DRIVER: makes $B/mnt show the lower layer; prints the command that
# runs a workload in the mount's namespace.
server=""
mount_driver() {
    rm -rf "$B/upper" "$B/work" "$B/mnt"
    mkdir -p "$B/upper" "$B/work" "$B/mnt"
    case $1 in
    plain)
        cp -a "$B/lower/." "$B/mnt/" ;;
    burrow)
        "$BURROW" overlay-mount --lower "$B/lower" --upper "$B/upper" --work "$B/work" "$B/mnt" >"$B/server.out" 2>&1 &
        server=$!
        for _ in $(seq 100); do grep -q mounted "$B/server.out" 2>/dev/null && break; sleep 0.05; done ;;
    fuse-overlayfs)
        fuse-overlayfs -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$B/mnt" ;;
    kernel) ;; # mounted inside the namespace by run_in
    esac
}

umount_driver() {
    case $1 in
    burrow) kill "$server" && wait "$server" || true ;;
    fuse-overlayfs) fusermount3 -u "$B/mnt" ;;
    esac
}

# run_in DRIVER SCRIPT: runs the workload, in a user+mount namespace with
# the kernel overlay mounted for the kernel driver; prints its seconds.
run_in() {
    local driver=$1 script=$2
    if [[ $driver == kernel ]]; then
        unshare -rm bash -c "mount -t overlay overlay -o 'lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work,userxattr' '$B/mnt' && $script"
    else
        bash -c "$script"
    fi
}

workload() {
    local m=$B/mnt
    case $1 in
    create) echo "t=\$(date +%s.%N); mkdir $m/new && tar -C $m/new -xf $B/tree.tar; echo \$(date +%s.%N) - \$t | bc" ;;
    stat) echo "t=\$(date +%s.%N); find $m/small -type f -exec cat {} + >/dev/null; echo \$(date +%s.%N) - \$t | bc" ;;
    write) echo "t=\$(date +%s.%N); dd if=/dev/zero of=$m/big bs=1M count=$MIB conv=fsync status=none; echo \$(date +%s.%N) - \$t | bc" ;;
    read) echo "dd if=/dev/zero of=$m/big bs=1M count=$MIB status=none; t=\$(date +%s.%N); dd if=$m/big of=/dev/null bs=1M status=none; echo \$(date +%s.%N) - \$t | bc" ;;
    copyup) echo "t=\$(date +%s.%N); for f in $m/cu/*; do printf z >> \$f; done; echo \$(date +%s.%N) - \$t | bc" ;;
    esac
}

median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.3f", m}'; }

declare -A result
for w in create stat write read copyup; do
    for d in $DRIVERS; do
        if [[ $d == fuse-overlayfs ]] && ! command -v fuse-overlayfs >/dev/null; then continue; fi
        times=()
        for _ in $(seq "$REPS"); do
            mount_driver "$d"
            times+=("$(run_in "$d" "$(workload "$w")")")
            umount_driver "$d"
        done
        result[$w,$d]=$(printf '%s\n' "${times[@]}" | median)
        log "$w $d ${result[$w,$d]}"
    done
done

if [[ -n $server ]]; then :; fi
printf '\n%-8s' workload
for d in $DRIVERS; do printf ' %16s' "$d"; done
printf '   (seconds, median of %s; x = fuse-overlayfs / driver)\n' "$REPS"
for w in create stat write read copyup; do
    printf '%-8s' "$w"
    for d in $DRIVERS; do
        v=${result[$w,$d]:-}
        ref=${result[$w,fuse-overlayfs]:-}
        if [[ -n $v && -n $ref ]]; then
            printf ' %8s (%5.2fx)' "$v" "$(echo "$ref / $v" | bc -l)"
        else
            printf ' %16s' "${v:--}"
        fi
    done
    printf '\n'
done
rm -rf "$B"
