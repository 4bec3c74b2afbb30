# A fresh filesystem for a benchmark's workspace, so that results do not
# depend on the state of the host's disk (this machine's root is ext4 without
# a journal, whose inode allocator grows slow after mass deletes: untarring
# 10,000 files into a plain folder took 0.25 to 4.9 s from run to run).
#
# Sourced, as root:
#
#   . scripts/bench/scratch-fs.sh
#   scratch_fs_mount DIR SIZE OWNER    # SIZE as truncate takes it: 6G, 512M
#   trap 'scratch_fs_remove DIR' EXIT
#
# scratch_fs_mount makes DIR.img (sparse, SIZE) beside DIR, formats it ext4
# with mkfs's defaults (a journal, as a distribution installs it), attaches
# it to a loop device with direct I/O (its blocks are then cached once, in
# the scratch filesystem, not a second time as pages of DIR.img), mounts it
# on DIR and gives DIR to OWNER. scratch_fs_remove undoes all of it and is
# safe to call when the mount was never made or is already gone.

# scratch_fs_mount DIR SIZE OWNER
scratch_fs_mount() {
    local dir=$1 size=$2 owner=$3 dev
    scratch_fs_remove "$dir"
    mkdir -p "$dir"
    truncate -s "$size" "$dir.img"
    mkfs.ext4 -q -F "$dir.img"
    dev=$(losetup --find --show --direct-io=on "$dir.img")
    if ! mount "$dev" "$dir"; then
        losetup -d "$dev"
        return 1
    fi
    chown "$owner:$(id -gn "$owner")" "$dir"
}

# scratch_fs_remove DIR
scratch_fs_remove() {
    local dir=$1 dev
    if mountpoint -q "$dir"; then
        dev=$(findmnt -n -o SOURCE --mountpoint "$dir")
        # A FUSE server the benchmark left behind may still hold a mount
        # below DIR; lazily, so the loop device comes free once it exits.
        umount -R "$dir" 2>/dev/null || umount -R -l "$dir"
        [[ -n $dev ]] && losetup -d "$dev" 2>/dev/null
    fi
    rm -f "$dir.img"
    [[ -d $dir ]] && rmdir "$dir" 2>/dev/null
    return 0
}
