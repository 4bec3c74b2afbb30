#!/usr/bin/env bash
# Overlay benchmark: burrow's FUSE overlay against fuse-overlayfs, the kernel
# overlay (mounted in a user namespace with burrow's options, and with
# rootless Podman's) and a plain folder (the limit), on the same workloads,
# as one unprivileged user.
#
#   scripts/bench/overlay.sh [BURROW_BIN]
#
# Workloads (each timed alone, on a fresh mount, median of $REPS runs):
#   create   unpack a tree of $FILES small files (tar x)
#   stat     stat and read every file of a lower layer holding $FILES files
#   write    write $MIB MiB sequentially and fsync
#   read     read a $MIB MiB lower file sequentially (the mount is fresh, so
#            nothing of it is in the mount's page cache)
#   reread   write $MIB MiB through the mount, then time reading it back
#   copyup   append one byte to each of 1000 lower 4 KiB files
# Within one repetition the drivers take turns, so a load that comes and
# goes on the machine hits them alike. Prints seconds per driver, the ratio
# against fuse-overlayfs, the CPU time the FUSE servers spent (user+system,
# steadier than wall time on a loaded machine, but blind to the kernel's
# side of each request), their peak RSS (VmHWM) and the load average.
#
# Drivers: plain (a copy in a folder), burrow (`burrow overlay-mount`),
# fuse-overlayfs, kernel (overlayfs in a user namespace with the options
# burrow's `overlay` driver uses for `run --rm`: userxattr,volatile), podman
# (overlayfs as rootless Podman 4.3 mounts it for `run --rm`, read from its
# mountinfo: userxattr,volatile; the same code path, so the two rows should
# differ by noise only).
#
# Fairness: every timed run starts after a `sync` and $SETTLE seconds of
# rest (outside the timing), so no run pays for the writeback or the
# clean-up of the one before (without the rest, the kernel overlay's 1 GiB
# write took 0.74-1.06 s right after fuse-overlayfs's and 0.42-0.71 s
# otherwise); the drivers' order rotates from one repetition to the next,
# and reverses every other one, so no driver always comes first, or always
# after the same other driver.
#
# Environment: REPS (5), FILES (10000), MIB (1024), DRIVERS ("plain burrow
# fuse-overlayfs kernel podman"), WORKLOADS ("create stat write read reread
# copyup", or a subset), SETTLE (3), BENCH_DIR (where to work, default
# /var/tmp/burrow-bench). As root, it makes BENCH_DIR a fresh ext4 on a loop
# device (scripts/bench/scratch-fs.sh; SCRATCH=0 to use the host's disk as
# it is), removed on exit, and re-runs itself there as $BENCH_USER
# (burrow-test).
set -euo pipefail

REPS=${REPS:-5}
FILES=${FILES:-10000}
MIB=${MIB:-1024}
DRIVERS=${DRIVERS:-"plain burrow fuse-overlayfs kernel podman"}
WORKLOADS=${WORKLOADS:-"create stat write read reread copyup"}
SETTLE=${SETTLE:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp/burrow-bench}
here=$(cd "$(dirname "$0")/../.." && pwd)
BURROW=${1:-${BURROW:-$here/target/release/burrow}}

if [[ $(id -u) == 0 ]]; then
    user=${BENCH_USER:-burrow-test}
    copy=/var/tmp/burrow-bench-bin
    install -m 0755 "$BURROW" "$copy"
    install -m 0755 "$0" /var/tmp/burrow-bench.sh
    work=$BENCH_DIR-$user
    if [[ ${SCRATCH:-1} != 0 ]]; then
        . "$here/scripts/bench/scratch-fs.sh"
        scratch=$work
        trap 'scratch_fs_remove "$scratch"' EXIT
        # The lower layer, a copy of it (plain), an upper written twice.
        scratch_fs_mount "$scratch" "$((4 * MIB + 2048))M" "$user"
        work=$scratch/bench
    fi
    runuser -u "$user" -- env REPS="$REPS" FILES="$FILES" MIB="$MIB" DRIVERS="$DRIVERS" WORKLOADS="$WORKLOADS" \
        SETTLE="$SETTLE" BENCH_DIR="$work" bash /var/tmp/burrow-bench.sh "$copy"
    exit
fi
[[ -x $BURROW ]] || { echo "overlay.sh: no burrow binary at $BURROW (cargo build --release)" >&2; exit 1; }

log() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }

chmod -R u+rwX "$BENCH_DIR" 2>/dev/null || true
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
B=$BENCH_DIR

# The lower layer: $FILES small files in 100 folders, 1000 4 KiB files and
# one $MIB MiB file.
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
dd if=/dev/urandom of="$B/lower/big" bs=1M count="$MIB" status=none
tar -C "$B/src" -cf "$B/tree.tar" .
rm -rf "$B/src"

# mount DRIVER: makes $B/mnt show the lower layer; prints the command that
# runs a workload in the mount's namespace.
server=""
# Removes what a mount left; a volatile overlay leaves a mode-000 folder
# with contents in its work dir, which only a chmod lets us remove.
clean() {
    chmod -R u+rwX "$@" 2>/dev/null || true
    rm -rf "$@"
}

mount_driver() {
    clean "$B/upper" "$B/work" "$B/mnt"
    mkdir -p "$B/upper" "$B/work" "$B/mnt"
    case $1 in
    plain)
        cp -a "$B/lower/." "$B/mnt/" ;;
    burrow)
        "$BURROW" overlay-mount --lower "$B/lower" --upper "$B/upper" --work "$B/work" "$B/mnt" >"$B/server.out" 2>&1 &
        server=$!
        wait_mounted ;;
    fuse-overlayfs)
        # In the foreground (-f), so $! is the server whose memory we read.
        fuse-overlayfs -f -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$B/mnt" 2>"$B/server.out" &
        server=$!
        wait_mounted ;;
    kernel | podman) ;; # mounted inside the namespace by run_in
    esac
}

wait_mounted() {
    for _ in $(seq 200); do
        grep -q " $B/mnt " /proc/self/mountinfo && return 0
        sleep 0.05
    done
    log "the $B/mnt mount did not come up: $(cat "$B/server.out")"
    exit 1
}

# The peak resident memory of the FUSE server, in KiB (0 for none).
peak_rss() {
    case $1 in
    burrow | fuse-overlayfs) awk '/^VmHWM:/ {print $2}' "/proc/$server/status" ;;
    *) echo 0 ;;
    esac
}

# The CPU time the FUSE server has used so far, in seconds ("" for none).
server_cpu() {
    case $1 in
    burrow | fuse-overlayfs)
        # Fields 14 and 15 of /proc/PID/stat (after the parenthesised name).
        sed 's/.*) //' "/proc/$server/stat" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($12 + $13) / hz}' ;;
    esac
}

umount_driver() {
    case $1 in
    burrow) kill "$server" && wait "$server" || true ;;
    fuse-overlayfs) fusermount3 -u "$B/mnt" && wait "$server" || true ;;
    esac
}

# run_in DRIVER SCRIPT: runs the workload, in a user+mount namespace with
# the kernel overlay mounted for the kernel driver; prints its seconds.
run_in() {
    local driver=$1 script=$2
    local opts="lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work"
    if [[ $driver == kernel ]]; then
        # burrow's overlay driver (src/container/rootfs.rs) for `run --rm`.
        unshare -rm bash -c "mount -t overlay overlay -o '$opts,userxattr,volatile' '$B/mnt' && $script"
    elif [[ $driver == podman ]]; then
        # Podman 4.3's rootless `run --rm`: its mountinfo shows userxattr and
        # fsync=volatile (redirect_dir=nofollow and uuid=on are the defaults).
        unshare -rm bash -c "mount -t overlay overlay -o '$opts,volatile,userxattr' '$B/mnt' && $script"
    else
        bash -c "$script"
    fi
}

workload() {
    local m=$B/mnt
    case $1 in
    # --no-same-owner: as root of a user namespace (the kernel rows) tar
    # would try to give the files the archive's owner, which is not mapped.
    create) echo "t=\$(date +%s.%N); mkdir $m/new && tar --no-same-owner -C $m/new -xf $B/tree.tar; echo \$(date +%s.%N) - \$t | bc" ;;
    stat) echo "t=\$(date +%s.%N); find $m/small -type f -exec cat {} + >/dev/null; echo \$(date +%s.%N) - \$t | bc" ;;
    write) echo "t=\$(date +%s.%N); dd if=/dev/zero of=$m/big bs=1M count=$MIB conv=fsync status=none; echo \$(date +%s.%N) - \$t | bc" ;;
    read) echo "t=\$(date +%s.%N); dd if=$m/big of=/dev/null bs=1M status=none; echo \$(date +%s.%N) - \$t | bc" ;;
    reread) echo "dd if=/dev/zero of=$m/new bs=1M count=$MIB status=none; t=\$(date +%s.%N); dd if=$m/new of=/dev/null bs=1M status=none; echo \$(date +%s.%N) - \$t | bc" ;;
    copyup) echo "t=\$(date +%s.%N); for f in $m/cu/*; do printf z >> \$f; done; echo \$(date +%s.%N) - \$t | bc" ;;
    esac
}

median() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; printf "%.3f", m}'; }

if ! command -v fuse-overlayfs >/dev/null; then
    log "fuse-overlayfs is missing (apt-get install fuse-overlayfs): no ratios"
    DRIVERS=${DRIVERS//fuse-overlayfs/}
fi
# The kernel rows' mount options as the kernel shows them, to compare.
mount_options() {
    local opts="lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work"
    mount_driver "$1"
    run_in "$1" "awk -v m=$B/mnt '\$5 == m {print \$6, \$NF}' /proc/self/mountinfo" |
        sed "s|$opts|lowerdir=.. upperdir=.. workdir=..|; s|^|$1 mount: |" >&2
}
for d in $DRIVERS; do
    case $d in kernel | podman) mount_options "$d" ;; esac
done
log "workspace: $(findmnt -n -o SOURCE,FSTYPE,OPTIONS --target "$B")"

read -ra drivers <<<"$DRIVERS"
declare -A result times rss cpu cpus
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for w in $WORKLOADS; do
    for ((r = 0; r < REPS; r++)); do
        for ((k = 0; k < ${#drivers[@]}; k++)); do
            # Rotated, and reversed every other repetition, so that the
            # driver run just before each one changes too.
            i=$(((k + r) % ${#drivers[@]}))
            ((r % 2 == 0)) || i=$((${#drivers[@]} - 1 - i))
            d=${drivers[i]}
            mount_driver "$d"
            # Outside the timing: no run pays for an earlier one's writeback.
            sync
            sleep "$SETTLE"
            times[$w,$d]+="$(run_in "$d" "$(workload "$w")") "
            cpus[$w,$d]+="$(server_cpu "$d") "
            kib=$(peak_rss "$d")
            (( kib > ${rss[$d]:-0} )) && rss[$d]=$kib
            umount_driver "$d"
        done
    done
    for d in $DRIVERS; do
        result[$w,$d]=$(printf '%s\n' ${times[$w,$d]} | median)
        [[ -n ${cpus[$w,$d]// /} ]] && cpu[$w,$d]=$(printf '%s\n' ${cpus[$w,$d]} | median)
        log "$w $d ${result[$w,$d]}  (runs: ${times[$w,$d]}; server cpu: ${cpus[$w,$d]})"
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
clean "$B/upper" "$B/work" "$B/mnt"

printf '\n%-8s' workload
for d in $DRIVERS; do printf ' %16s' "$d"; done
printf '   (seconds, median of %s; x = fuse-overlayfs / driver)\n' "$REPS"
for w in $WORKLOADS; do
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
printf '\nserver CPU seconds (user+system, median):\n'
for w in $WORKLOADS; do
    printf '%-8s' "$w"
    for d in $DRIVERS; do
        v=${cpu[$w,$d]:-}
        ref=${cpu[$w,fuse-overlayfs]:-}
        if [[ -n $v && -n $ref && $v != 0.000 ]]; then
            printf ' %8s (%5.2fx)' "$v" "$(echo "$ref / $v" | bc -l)"
        else
            printf ' %16s' "${v:--}"
        fi
    done
    printf '\n'
done
printf '%-8s' "rss MiB"
for d in $DRIVERS; do
    if (( ${rss[$d]:-0} > 0 )); then
        printf ' %16.1f' "$(echo "${rss[$d]} / 1024" | bc -l)"
    else
        printf ' %16s' -
    fi
done
printf '   (peak VmHWM of the FUSE server over every run)\n'
printf 'load average: %s before, %s after; %s CPUs\n' "$load_before" "$load_after" "$(nproc)"
clean "$B"
