#!/usr/bin/env bash
# Network benchmark for burrow's userspace network (issue 5).
#
#   scripts/bench/net.sh [RUNS]          (default 5; median reported)
#
# Measures, with the same peers on both sides of each comparison:
#   - host → container over -p (1 GiB, MiB/s), against host loopback;
#   - container → host through the gateway 10.0.2.2 (1 GiB, MiB/s);
#   - connections per second of short HTTP requests over -p (one client,
#     busybox httpd as the server), against the same httpd on host loopback;
#   - the supervisor's peak RSS (VmHWM) after the load.
# The in-container endpoints are busybox (nc, httpd); busybox nc reads in
# small chunks, so the host-loopback row uses busybox nc too, which makes the
# ratio fair but both absolute numbers lower than iperf3's (busybox nc
# sends in small writes, so the upload rows are lower still).
# Podman/pasta rows are not measured by this script yet (see docs/performance.md
# for the peers' numbers quoted in the issue).
#
# Env: BURROW (binary, default target/release/burrow), BUSYBOX_TAR (image
# tarball, built with scripts/mkimage-busybox.sh when unset), SIZE_MIB (1024).
set -euo pipefail

runs=${1:-5}
size_mib=${SIZE_MIB:-1024}
here=$(cd "$(dirname "$0")/../.." && pwd)
burrow=${BURROW:-$here/target/release/burrow}
[[ -x $burrow ]] || { echo "net.sh: build first: cargo build --release" >&2; exit 1; }
command -v python3 >/dev/null || { echo "net.sh: needs python3" >&2; exit 1; }
command -v busybox >/dev/null || { echo "net.sh: needs busybox (busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
    "$burrow" --root "$work/data" --runroot "$work/run" rm -f nsink nweb >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
b() { "$burrow" --root "$work/data" --runroot "$work/run" "$@"; }

tar=${BUSYBOX_TAR:-$work/busybox.tar}
[[ -f $tar ]] || "$here/scripts/mkimage-busybox.sh" "$tar" >/dev/null
b import "$tar" busybox >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The measuring peer: send SIZE bytes to a port and time it until the
# receiver closes; receive from one connection and time it; or count
# sequential HTTP requests for a few seconds.
cat >"$work/peer.py" <<'EOF'
import socket, sys, time
mode = sys.argv[1]
if mode == "send":               # send PORT MIB: until the peer closes
    port, mib = int(sys.argv[2]), int(sys.argv[3])
    deadline = time.time() + 15
    while True:
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(0.5)
        try:                      # nc half-closes at once when it is there
            if s.recv(1) == b"":
                break
        except socket.timeout:
            break
        except ConnectionResetError:
            pass
        if time.time() > deadline:
            sys.exit("the container never listened")
        time.sleep(0.2)
    s.settimeout(None)
    block = b"x" * (1 << 20)
    t = time.perf_counter()
    for _ in range(mib):
        s.sendall(block)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    print(mib / (time.perf_counter() - t))
elif mode == "recv":             # recv PORTFILE: one connection, to EOF
    ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(1)
    open(sys.argv[2], "w").write(str(ls.getsockname()[1]))
    c, _ = ls.accept()
    t, n = None, 0
    buf = bytearray(1 << 20)
    while True:
        k = c.recv_into(buf)
        if t is None: t = time.perf_counter()
        if k == 0: break
        n += k
    print(n / (1 << 20) / (time.perf_counter() - t))
elif mode == "conns":            # conns PORT SECONDS
    port, secs = int(sys.argv[2]), float(sys.argv[3])
    req = b"GET / HTTP/1.0\r\n\r\n"
    n, end = 0, time.perf_counter() + secs
    t = time.perf_counter()
    while time.perf_counter() < end:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        while s.recv(65536): pass
        s.close(); n += 1
    print(n / (time.perf_counter() - t))
EOF
peer() { python3 "$work/peer.py" "$@"; }
median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.0f}")' "$@"; }

declare -A res
measure() { # NAME COMMAND...: RUNS runs, median into res[NAME]
    local name=$1; shift
    local vals=()
    for ((i = 0; i < runs; i++)); do vals+=("$("$@")"); done
    res[$name]=$(median "${vals[@]}")
}

# Host loopback: busybox nc as the sink, busybox httpd as the server.
host_in() {
    local port; port=$(free_port)
    busybox nc -l -p "$port" </dev/null >/dev/null & local p=$!
    peer send "$port" "$size_mib"; wait "$p" || true
}
measure host_in host_in
host_out() {
    local pf=$work/port.$RANDOM
    peer recv "$pf" >"$pf.out" & local p=$!
    while [[ ! -s $pf ]]; do sleep 0.05; done
    head -c $((size_mib << 20)) /dev/zero | busybox nc 127.0.0.1 "$(cat "$pf")"
    wait "$p"; cat "$pf.out"
}
measure host_out host_out
mkdir -p "$work/www"; echo hello >"$work/www/index.html"
hport=$(free_port)
busybox httpd -f -p "127.0.0.1:$hport" -h "$work/www" & pids+=($!)
sleep 0.3
measure host_conns peer conns "$hport" 3

# burrow: host → container over -p.
burrow_in() {
    local port; port=$(free_port)
    b run -d --name nsink -p "127.0.0.1:$port:5001" busybox sh -c 'nc -l -p 5001 >/dev/null' >/dev/null
    peer send "$port" "$size_mib"
    b rm -f nsink >/dev/null
}
measure burrow_in burrow_in

# burrow: container → host through the gateway.
burrow_out() {
    local pf=$work/port.$RANDOM
    peer recv "$pf" >"$pf.out" & local p=$!
    while [[ ! -s $pf ]]; do sleep 0.05; done
    b run --rm busybox sh -c "head -c $((size_mib << 20)) /dev/zero | nc 10.0.2.2 $(cat "$pf")" >/dev/null
    wait "$p"; cat "$pf.out"
}
measure burrow_out burrow_out

# burrow: connections per second over -p, and the supervisor's RSS after.
wport=$(free_port)
b run -d --name nweb -p "127.0.0.1:$wport:80" busybox httpd -f -p 80 -h /var/www >/dev/null
for _ in $(seq 50); do peer conns "$wport" 0.01 >/dev/null 2>&1 && break; sleep 0.1; done
measure burrow_conns peer conns "$wport" 3
sup=$(ss -ltnpH "sport = :$wport" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
rss=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$sup/status" 2>/dev/null || echo "n/a")
b rm -f nweb >/dev/null

ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
cat <<EOF
| path (median of $runs) | burrow | host loopback | ratio |
| --- | --- | --- | --- |
| host → container over -p, MiB/s | ${res[burrow_in]} | ${res[host_in]} | $(ratio "${res[burrow_in]}" "${res[host_in]}") |
| container → host via 10.0.2.2, MiB/s | ${res[burrow_out]} | ${res[host_out]} | $(ratio "${res[burrow_out]}" "${res[host_out]}") |
| HTTP connections/s over -p (1 client) | ${res[burrow_conns]} | ${res[host_conns]} | $(ratio "${res[burrow_conns]}" "${res[host_conns]}") |
supervisor peak RSS (VmHWM) after the load: $rss
EOF
