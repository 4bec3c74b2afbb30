#!/usr/bin/env bash
# Builds a tiny root filesystem tarball from Debian's busybox-static, for
# `burrow import OUT.tar busybox`. No root needed, no network.
#
#   scripts/mkimage-busybox.sh OUT.tar
#
# The image: /bin/busybox and one symlink per applet in /bin, /etc/passwd and
# /etc/group (root, a `user` 1000:1000, nobody), /tmp (1777), /root,
# /home/user (owned by 1000:1000), empty /proc /sys /dev mount points, and
# /var/www/index.html for the httpd demo. Every entry has the same mtime and
# numeric owners, so the same busybox gives the same tarball byte for byte.
# BUSYBOX=/path/to/busybox picks another static busybox.
set -euo pipefail

die() { printf 'mkimage-busybox: error: %s\n' "$*" >&2; exit 1; }

[[ $# == 1 ]] || die "usage: $0 OUT.tar"
out=$1
busybox=${BUSYBOX:-$(command -v busybox || true)}
[[ -n $busybox && -x $busybox ]] || die "busybox not found; install busybox-static (apt-get install busybox-static)"
# A dynamically linked busybox (Debian's `busybox` package) would need its
# libraries inside the image.
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked; install busybox-static or set BUSYBOX to a static one"
fi

# A fixed date (2000-01-01) keeps the tarball reproducible.
mtime=${SOURCE_DATE_EPOCH:-946684800}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs

umask 022
mkdir -p "$root"/{bin,usr/bin,etc,root,home/user,tmp,proc,sys,dev,var/www}
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"

cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] && continue
    ln -s busybox "$root/bin/$applet"
done
# Scripts with `#!/usr/bin/env sh` expect this one.
ln -s ../../bin/busybox "$root/usr/bin/env"

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
cat >"$root/var/www/index.html" <<'EOF'
<!doctype html>
<title>burrow</title>
<p>Hello from a rootless burrow container.</p>
EOF

tar_opts=(--format=gnu --sort=name --mtime="@$mtime" --numeric-owner)
mkdir -p "$(dirname "$out")"
# Everything as root:root, except the home of `user`, appended owned by 1000:1000.
tar -C "$root" "${tar_opts[@]}" --owner=0 --group=0 --exclude=./home/user -cf "$out.partial" .
tar -C "$root" "${tar_opts[@]}" --owner=1000 --group=1000 -rf "$out.partial" ./home/user
mv "$out.partial" "$out"
printf 'mkimage-busybox: wrote %s (%s bytes, %s applets)\n' \
    "$out" "$(stat -c %s "$out")" "$("$busybox" --list | wc -l)" >&2
