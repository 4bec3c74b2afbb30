#!/usr/bin/env bash
# Pull benchmark: time and peak RSS of pulling a ~100 MB (compressed)
# multi-layer image from a registry on 127.0.0.1, into an empty store each time:
#   burrow pull                       (download, verify, decompress, unpack)
#   podman pull                       (the same, overlay storage)
#   skopeo copy docker://... oci:DIR  (transfer and digest checks only: the floor)
# Runs are interleaved (burrow, podman, skopeo, burrow, ...), RUNS rounds
# (default 5); prints a markdown table of medians, ratios to podman, and the
# largest peak RSS seen (/usr/bin/time -v).
#
# The image: Debian bookworm minbase + python3 from mmdebstrap when the
# mirror answers (split into three layers: usr/lib, usr/share, the rest),
# else three layers of random files (~100 MB). Built once, cached in BENCH_DIR.
#
# Usage:
#   sudo scripts/bench/pull.sh
# Environment (through sudo: sudo RUNS=3 BURROW=PATH scripts/bench/pull.sh):
#   BURROW=PATH     burrow binary (default: target/release/burrow, built if missing)
#   RUNS=N          rounds (default 5)
#   BENCH_USER=NAME unprivileged user to measure as (default burrow-test)
#   BENCH_DIR=DIR   scratch and cache folder (default /tmp/burrow-bench-pull)
#   SETTLE=S        seconds of rest after the `sync` before each run (default 2)
#   SCRATCH=0       work in BENCH_DIR on the host's disk as it is, instead of a
#                   fresh ext4 on a loop device (scratch-fs.sh) mounted there
#
# Fairness: every run starts after a `sync` and SETTLE seconds of rest,
# outside the timing. burrow ends each layer with a `syncfs` (a pulled layer
# must survive a crash); without the `sync` it would also write back what
# the run before it left in the page cache (skopeo's 77 MB copy, Podman's
# layers, which Podman does not flush), and be timed for it.
set -euo pipefail

RUNS=${RUNS:-5}
SETTLE=${SETTLE:-2}
SCRATCH=${SCRATCH:-1}
BENCH_USER=${BENCH_USER:-burrow-test}
BENCH_DIR=${BENCH_DIR:-/tmp/burrow-bench-pull}
SAFE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

log() { printf '# %s\n' "$*" >&2; }
die() { printf 'pull.sh: %s\n' "$*" >&2; exit 1; }

case $RUNS in ''|*[!0-9]*) die "RUNS must be a number";; esac
[[ $(id -u) == 0 ]] || die "run me as root (I start a registry and measure as $BENCH_USER)"
for t in docker-registry skopeo podman python3 runuser /usr/bin/time; do
    command -v "$t" >/dev/null || die "missing $t (apt-get install docker-registry skopeo podman python3 time)"
done
id "$BENCH_USER" >/dev/null 2>&1 || die "no user $BENCH_USER (scripts/setup-host.sh creates burrow-test)"

mkdir -p "$BENCH_DIR"
chmod 755 "$BENCH_DIR"

# The burrow binary, copied where the bench user can run it.
if [[ -z ${BURROW:-} ]]; then
    BURROW=$REPO/target/release/burrow
    [[ -x $BURROW ]] || (cd "$REPO" && cargo build --release --bin burrow >&2)
fi
install -m 755 "$BURROW" "$BENCH_DIR/burrow"

# The image, as an OCI layout.
layout=$BENCH_DIR/layout
if [[ ! -f $layout/index.json ]]; then
    rootfs=$BENCH_DIR/rootfs.tar
    [[ -d $rootfs ]] && rm -rf "$rootfs"
    kind=random
    if [[ ! -f $rootfs ]] && timeout 10 python3 -c 'import urllib.request; urllib.request.urlopen("http://deb.debian.org/debian/dists/bookworm/Release", timeout=8)' 2>/dev/null; then
        log "mmdebstrap --variant=minbase --include=python3 bookworm"
        mmdebstrap --variant=minbase --include=python3 bookworm "$BENCH_DIR/part.tar" >&2 && mv "$BENCH_DIR/part.tar" "$rootfs"
    fi
    [[ -f $rootfs ]] && kind=debian
    log "building a three-layer OCI layout ($kind)"
    python3 - "$layout" "$kind" "$rootfs" <<'EOF'
import gzip, hashlib, io, json, os, sys, tarfile
layout, kind, rootfs = sys.argv[1:4]
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)
def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
parts = [io.BytesIO() for _ in range(3)]
tars = [tarfile.open(fileobj=p, mode="w", format=tarfile.PAX_FORMAT) for p in parts]
if kind == "debian":
    with tarfile.open(rootfs) as src:
        for m in src:
            name = m.name.lstrip("./")
            i = 0 if name.startswith("usr/lib") else 1 if name.startswith("usr/share") else 2
            tars[i].addfile(m, src.extractfile(m) if m.isfile() else None)
else:
    for i, t in enumerate(tars):
        for j in range(34):
            data = os.urandom(1 << 20)
            info = tarfile.TarInfo(f"data/{i}/{j}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
layers, diff_ids = [], []
for t, p in zip(tars, parts):
    t.close()
    raw = p.getvalue()
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    d, n = put(gzip.compress(raw, 6, mtime=0))
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                     "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
cd, cn = put(config)
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
                       "layers": layers}).encode()
md, mn = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
           "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
          open(os.path.join(layout, "index.json"), "w"))
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
print("# layers (compressed):", ", ".join(f"{l['size'] / 1e6:.1f} MB" for l in layers), file=sys.stderr)
EOF
fi

# A registry of our own on a free port, with a clean environment.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=$BENCH_DIR/registry
rm -rf "$reg"; mkdir -p "$reg/storage"
cat >"$reg/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $reg/storage
http:
  addr: 127.0.0.1:$port
EOF
env -i PATH=$SAFE_PATH docker-registry serve "$reg/config.yml" >"$reg/log" 2>&1 &
reg_pid=$!
trap 'kill $reg_pid 2>/dev/null; wait $reg_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
ref=127.0.0.1:$port/bench:1
skopeo --insecure-policy copy --dest-tls-verify=false "oci:$layout:latest" "docker://$ref" >/dev/null
log "image pushed as $ref"

home=$(getent passwd "$BENCH_USER" | cut -d: -f6)
work=$BENCH_DIR/work
if [[ $SCRATCH == 1 ]]; then
    # A fresh ext4 of its own (see scratch-fs.sh): on this machine's root,
    # ext4 without a journal, creating files right after mass deletes (the
    # previous benchmark's clean-up, a test suite's) crawls through the
    # inode allocator, and a pull is 10,000 creates.
    . "$HERE/scratch-fs.sh"
    # Rootless Podman's pause process keeps the mount namespace it was
    # started in: one from before the mount does not see it, one from after
    # holds it (and its loop device) after the unmount. Stopped both times.
    stop_pause() {
        runuser -u "$BENCH_USER" -- env -i HOME="$home" PATH="$SAFE_PATH" podman system migrate >/dev/null 2>&1 || true
    }
    trap 'kill $reg_pid 2>/dev/null; wait $reg_pid 2>/dev/null || true; stop_pause; scratch_fs_remove "$work"' EXIT
    scratch_fs_mount "$work" "$((RUNS * 800 + 1024))M" "$BENCH_USER"
    stop_pause
else
    rm -rf "$work"; mkdir -p "$work"; chown "$BENCH_USER:" "$work"
fi

# Runs one timed command as the bench user in a new folder; prints "seconds max_rss_kb".
# Every run gets a folder of its own, all removed at the end: removing the
# previous run's 10,000 files just before the next would time the
# filesystem's inode allocator instead of the pull (ext4 without a journal, as
# on this machine, skips inodes freed in the last minute, one at a time).
measure() {
    local name=$1 round=$2; shift 2
    local dir=$work/$name-$round
    sync
    sleep "$SETTLE"
    runuser -u "$BENCH_USER" -- env -i HOME="$home" PATH="$SAFE_PATH" bash -c '
        d=$1; shift
        mkdir -p "$d"; cd "$d"
        s=$(date +%s.%N)
        /usr/bin/time -v -o time.txt "$@" >out.txt 2>err.txt || { echo "FAILED: $(tail -3 err.txt)" >&2; exit 1; }
        e=$(date +%s.%N)
        rss=$(awk -F: "/Maximum resident/ {gsub(/ /,\"\",\$2); print \$2}" time.txt)
        echo "$(echo "$e - $s" | bc) $rss"
    ' _ "$dir" "$@"
}

burrow_cmd=("$BENCH_DIR/burrow" --root data --runroot run pull -q "$ref")
podman_cmd=(podman --root data --runroot run --storage-driver overlay pull -q --tls-verify=false "$ref")
skopeo_cmd=(skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$ref" oci:copy:x)

declare -A times rss
for name in burrow podman skopeo; do times[$name]=""; rss[$name]=0; done
for round in $(seq "$RUNS"); do
    for name in burrow podman skopeo; do
        cmd_var="${name}_cmd[@]"
        read -r t r < <(measure "$name" "$round" "${!cmd_var}") || die "$name failed"
        times[$name]+="$t "
        (( r > ${rss[$name]} )) && rss[$name]=$r
        log "round $round: $name ${t}s, peak RSS $((r / 1024)) MiB"
    done
done

log "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
pm=$(echo "${times[podman]}" | median)
echo "| tool | median of $RUNS (s) | vs podman pull | peak RSS (MiB) |"
echo "|---|---|---|---|"
for name in burrow podman skopeo; do
    m=$(echo "${times[$name]}" | median)
    printf '| %s | %.2f | %.2fx | %d |\n' "$name" "$m" "$(echo "$m / $pm" | bc -l)" "$(( ${rss[$name]} / 1024 ))"
done
if [[ $SCRATCH != 1 ]]; then
    runuser -u "$BENCH_USER" -- unshare -Ur --map-auto rm -rf "$work" 2>/dev/null || rm -rf "$work"
fi
