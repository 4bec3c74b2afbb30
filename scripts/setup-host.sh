#!/usr/bin/env bash
# Prepares this machine the way a normal distribution ships, so burrow can be
# run and tested as an unprivileged user. Run as root; idempotent.
#
#   scripts/setup-host.sh [--demo]
#
# What it does, and why:
# - installs the few Debian packages burrow and its tests use: uidmap
#   (newuidmap/newgidmap for the subordinate id ranges), fuse3 (fusermount3),
#   busybox-static (the test image), iproute2 (network tests), docker-registry,
#   skopeo, apache2-utils (htpasswd) and openssl (the test token server's key,
#   certificate and signatures) for the registry tests, mmdebstrap
#   (the Debian + python3 image of the web app test), podman with runc and
#   slirp4netns (the interop tests: podman loads burrow's archives, pulls and
#   runs burrow's builds; crun refuses hybrid-cgroup hosts, so runc);
# - creates `burrow-test`, a user with /etc/subuid and /etc/subgid ranges (the
#   normal rootless setup), and `burrow-nosub`, a user with none (burrow's
#   single-id fallback); with --demo also `burrow-demo`, for scripts/demo.sh;
# - makes /dev/fuse and /dev/net/tun usable by everyone (mode 0666), as
#   distributions ship them; bare cloud images leave them 0600;
# - lets every group use unprivileged ICMP echo sockets
#   (net.ipv4.ping_group_range = 0 2147483647, systemd's default), which
#   burrow forwards a container's ping through; bare images keep "1 0";
# - creates a "far host" for the network tests: the network namespace
#   burrow-far behind a veth pair, 10.251.0.2 (fd51::2) inside and 10.251.0.1
#   (fd51::1) on the host's end burrow-far0, so containers can reach a host
#   that is neither loopback nor on the internet.
set -euo pipefail

PACKAGES=(uidmap fuse3 busybox-static iproute2 docker-registry skopeo apache2-utils openssl mmdebstrap podman runc slirp4netns)
USERS=(burrow-test)
[[ ${1:-} == --demo ]] && USERS=(burrow-demo)

log() { printf 'setup-host: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run me as root (I install packages and create users)"

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} == 0 ]] && return
    log "installing ${missing[*]}"
    # Another apt may be running (a benchmark setup, unattended upgrades): wait for its lock.
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints the first id after every range in /etc/subuid and /etc/subgid, so a
# range added by hand overlaps none of them.
next_free_subid() {
    local next=200000 start count f
    for f in /etc/subuid /etc/subgid; do
        [[ -f $f ]] || continue
        while IFS=: read -r _ start count; do
            [[ $start =~ ^[0-9]+$ && $count =~ ^[0-9]+$ ]] || continue
            (( start + count > next )) && next=$(( start + count ))
        done <"$f"
    done
    echo "$next"
}

has_subids() {
    grep -q "^$1:" /etc/subuid 2>/dev/null && grep -q "^$1:" /etc/subgid 2>/dev/null
}

ensure_user_with_subids() {
    local user=$1
    id "$user" >/dev/null 2>&1 || { log "creating user $user"; useradd --create-home --shell /bin/bash "$user"; }
    touch /etc/subuid /etc/subgid
    if ! grep -q "^$user:" /etc/subuid; then
        local start; start=$(next_free_subid)
        log "adding subuids $start-$(( start + 65535 )) for $user"
        usermod --add-subuids "$start-$(( start + 65535 ))" "$user"
    fi
    if ! grep -q "^$user:" /etc/subgid; then
        local start; start=$(next_free_subid)
        log "adding subgids $start-$(( start + 65535 )) for $user"
        usermod --add-subgids "$start-$(( start + 65535 ))" "$user"
    fi
    has_subids "$user" || die "could not give $user subordinate ids"
}

ensure_user_without_subids() {
    local user=$1
    id "$user" >/dev/null 2>&1 || {
        log "creating user $user (no subordinate ids)"
        useradd --create-home --shell /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
    }
    # Some useradd builds ignore -K for these: remove whatever was added.
    sed -i "/^$user:/d" /etc/subuid /etc/subgid
}

open_devices() {
    local d
    for d in /dev/fuse /dev/net/tun; do
        [[ -e $d ]] && chmod 0666 "$d"
    done
    return 0
}

allow_ping_sockets() {
    local range="0 2147483647" lo hi
    read -r lo hi </proc/sys/net/ipv4/ping_group_range
    [[ "$lo $hi" == "$range" ]] && return
    log "allowing ICMP echo sockets for every group (net.ipv4.ping_group_range)"
    sysctl -qw net.ipv4.ping_group_range="$range"
    # Kept across reboots, as systemd's own 50-default.conf does.
    [[ -d /etc/sysctl.d ]] && printf 'net.ipv4.ping_group_range = %s\n' "$range" >/etc/sysctl.d/50-burrow-ping.conf
    return 0
}

FAR_NS=burrow-far
FAR_LINK=burrow-far0

make_far_host() {
    ip netns list | grep -qw "^$FAR_NS" || { log "creating the far host (netns $FAR_NS)"; ip netns add "$FAR_NS"; }
    if ! ip link show "$FAR_LINK" >/dev/null 2>&1; then
        ip link add "$FAR_LINK" type veth peer name eth0 netns "$FAR_NS"
    fi
    ip addr replace 10.251.0.1/24 dev "$FAR_LINK"
    ip netns exec "$FAR_NS" ip addr replace 10.251.0.2/24 dev eth0
    # nodad: the addresses are usable at once, not after duplicate detection.
    if [[ -e /proc/sys/net/ipv6 ]]; then
        ip addr replace fd51::1/64 dev "$FAR_LINK" nodad
        ip netns exec "$FAR_NS" ip addr replace fd51::2/64 dev eth0 nodad
    fi
    ip link set "$FAR_LINK" up
    ip netns exec "$FAR_NS" ip link set lo up
    ip netns exec "$FAR_NS" ip link set eth0 up
    ip netns exec "$FAR_NS" ip route replace default via 10.251.0.1
}

install_packages
for u in "${USERS[@]}"; do ensure_user_with_subids "$u"; done
[[ ${1:-} == --demo ]] || ensure_user_without_subids burrow-nosub
open_devices
allow_ping_sockets
make_far_host
log "ready: ${USERS[*]} (with subids)$([[ ${1:-} == --demo ]] || echo ', burrow-nosub (without)')"
