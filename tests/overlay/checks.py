#!/usr/bin/python3
"""File-system checks for burrow's overlay, run by tests/overlay.rs as an
unprivileged user.

    checks.py setup BASE            lowers BASE/l1 (top) and BASE/l2 (bottom)
    checks.py overlay CASE MNT BASE one overlay check on the mounted overlay
    checks.py posix DIR             the POSIX checks, on any folder
    checks.py after CASE BASE       checks on the upper dir after unmount

Each check raises (exit 1 with a traceback) on the first wrong result. The
POSIX checks are written in the style of pjdfstest: one syscall, its result
or errno, its effect on stat. They run on a plain folder too, as the
reference: a check that fails there is wrong, not the overlay.
"""

import errno
import hashlib
import mmap
import os
import shutil
import stat
import sys
import threading
import time

FIXED_NS = 1_500_000_000_123_456_789
OWNER = "user.burrow.owner"


def write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)
    os.chmod(path, mode)


def read(path):
    with open(path) as f:
        return f.read()


def expect_errno(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        assert e.errno == code, f"{fn.__name__}{args}: expected {errno.errorcode[code]}, got {e}"
        return
    raise AssertionError(f"{fn.__name__}{args}: expected {errno.errorcode[code]}, succeeded")


def tree_digest(root):
    """A digest of names, types, modes, contents and user xattrs below root."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {st.st_mode:o} {st.st_mtime_ns}\n".encode())
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h.update(f.read())
            try:
                for k in sorted(os.listxattr(p, follow_symlinks=False)):
                    h.update(k.encode() + os.getxattr(p, k, follow_symlinks=False))
            except OSError:
                pass
    return h.hexdigest()


def xattrs_supported(path):
    try:
        os.setxattr(path, "user.probe", b"1")
        os.removexattr(path, "user.probe")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- setup

BIG = 3 * 1024 * 1024 + 4321


def pattern(n, seed=7):
    """n bytes in which every offset's byte differs from its neighbours' and
    the pattern never repeats at a page or answer boundary, so any shifted,
    missing or doubled range shows."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


SCAN_FILES = 60


def scan_content(i):
    """File i of the scan folder: sizes from empty to past a page, one of
    them larger than what is read ahead (64 KiB)."""
    size = 70_000 if i == 40 else (i * 613) % 9000
    return pattern(size, seed=i)


def _mkdir_for(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def setup(base):
    l1, l2 = os.path.join(base, "l1"), os.path.join(base, "l2")
    for d in ("l1", "l2", "upper", "work", "mnt", "plain"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    write(f"{l2}/etc/passwd", "root-base\n")
    write(f"{l1}/etc/passwd", "root-top\n", 0o640)
    write(f"{l2}/etc/hosts", "hosts\n")
    write(f"{l2}/etc/gone", "deleted by l1\n")
    write(f"{l1}/etc/.wh.gone", "")
    write(f"{l2}/d/sub/x", "x")
    write(f"{l2}/d/y", "y")
    write(f"{l1}/d/z", "z")
    write(f"{l2}/tree/a/b/c", "deep")
    write(f"{l1}/tree/top", "t")
    write(f"{l2}/hl/one", "link\n")
    os.link(f"{l2}/hl/one", f"{l2}/hl/two")
    write(f"{l2}/x/attr", "a", 0o640)
    if xattrs_supported(f"{l2}/x/attr"):
        os.setxattr(f"{l2}/x/attr", "user.k", b"v")
        os.setxattr(f"{l2}/x/attr", "user.burrow.uid", b"1000")
    os.utime(f"{l2}/x/attr", ns=(FIXED_NS, FIXED_NS))
    # Owners as the store records them without subordinate ids.
    for name in ("kept", "mine", "group"):
        write(f"{l2}/own/{name}", name)
        if xattrs_supported(f"{l2}/own/{name}"):
            os.setxattr(f"{l2}/own/{name}", OWNER, b"1000:1000:644")
    write(f"{l2}/mm/data", "a" * 8192)
    write(f"{l2}/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
    write(f"{l2}/conc/shared", "")
    os.symlink("../etc/passwd", f"{l2}/bin/link")
    os.mkfifo(f"{l2}/bin/fifo", 0o600)
    for i in range(50):
        write(f"{l2}/many/f{i:03}", str(i))
    # A folder to read file after file (see check_read_ahead).
    for i in range(SCAN_FILES):
        with open(_mkdir_for(f"{l2}/scan/s{i:03}"), "wb") as f:
            f.write(scan_content(i))
    # Larger than one READ answer (1 MiB), not a whole number of pages.
    os.makedirs(f"{l2}/big", exist_ok=True)
    with open(f"{l2}/big/data", "wb") as f:
        f.write(pattern(BIG))
    with open(os.path.join(base, "lowers.sha256"), "w") as f:
        f.write(tree_digest(l1) + tree_digest(l2))


def lowers_untouched(base):
    with open(os.path.join(base, "lowers.sha256")) as f:
        want = f.read()
    got = tree_digest(os.path.join(base, "l1")) + tree_digest(os.path.join(base, "l2"))
    assert got == want, "a lower layer was modified"


# ---------------------------------------------------------------- overlay checks


def check_copy_up(m, base):
    ino = os.stat(f"{m}/etc/passwd").st_ino
    assert read(f"{m}/etc/passwd") == "root-top\n", "top layer wins"
    with open(f"{m}/etc/passwd", "a") as f:
        f.write("more\n")
    assert read(f"{m}/etc/passwd") == "root-top\nmore\n"
    st = os.stat(f"{m}/etc/passwd")
    assert st.st_ino == ino, "st_ino survives copy-up"
    assert stat.S_IMODE(st.st_mode) == 0o640, "mode copied up"
    assert read(f"{base}/upper/etc/passwd") == "root-top\nmore\n"
    # Metadata-only copy-ups.
    os.chmod(f"{m}/bin/tool", 0o700)
    assert stat.S_IMODE(os.stat(f"{m}/bin/tool").st_mode) == 0o700
    assert read(f"{m}/bin/tool").startswith("#!/bin/sh")
    os.utime(f"{m}/etc/hosts", ns=(FIXED_NS, FIXED_NS))
    assert os.stat(f"{m}/etc/hosts").st_mtime_ns == FIXED_NS
    st = os.stat(f"{m}/x/attr")
    assert st.st_mtime_ns == FIXED_NS, "times of the lower file shown"
    with open(f"{m}/x/attr", "r+") as f:
        f.truncate(0)
    assert os.stat(f"{m}/x/attr").st_size == 0
    # O_TRUNC on a lower file.
    with open(f"{m}/mm/data", "w") as f:
        f.write("short")
    assert read(f"{m}/mm/data") == "short"
    # Symlinks and fifos copy up as themselves.
    os.chown(f"{m}/bin/link", os.getuid(), os.getgid(), follow_symlinks=False)
    assert os.readlink(f"{m}/bin/link") == "../etc/passwd"
    assert os.readlink(f"{base}/upper/bin/link") == "../etc/passwd"
    os.chmod(f"{m}/bin/fifo", 0o640)
    assert stat.S_ISFIFO(os.lstat(f"{base}/upper/bin/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(f"{m}/bin/fifo").st_mode) == 0o640
    lowers_untouched(base)


def check_whiteouts(m, base):
    assert not os.path.exists(f"{m}/etc/gone"), "a lower whiteout hides the name"
    names = os.listdir(f"{m}/etc")
    assert sorted(names) == ["hosts", "passwd"], names
    os.unlink(f"{m}/etc/hosts")
    expect_errno(errno.ENOENT, os.stat, f"{m}/etc/hosts")
    assert "hosts" not in os.listdir(f"{m}/etc")
    assert os.path.exists(f"{base}/upper/etc/.wh.hosts")
    expect_errno(errno.ENOENT, os.stat, f"{m}/etc/.wh.hosts")
    write(f"{m}/etc/hosts", "again\n")
    assert read(f"{m}/etc/hosts") == "again\n"
    assert not os.path.exists(f"{base}/upper/etc/.wh.hosts"), "whiteout removed on re-create"
    assert sorted(os.listdir(f"{m}/etc")) == ["hosts", "passwd"]
    # An upper-only file leaves no whiteout.
    write(f"{m}/etc/new", "n")
    os.unlink(f"{m}/etc/new")
    assert not os.path.exists(f"{base}/upper/etc/.wh.new")
    # Names the overlay keeps for itself cannot be made.
    expect_errno(errno.EINVAL, os.mkdir, f"{m}/etc/.wh.x")
    lowers_untouched(base)


def check_opaque(m, base):
    assert sorted(os.listdir(f"{m}/d")) == ["sub", "y", "z"]
    shutil.rmtree(f"{m}/d")
    assert not os.path.exists(f"{m}/d")
    os.mkdir(f"{m}/d")
    assert os.listdir(f"{m}/d") == [], "a re-created folder shows nothing of the old one"
    expect_errno(errno.ENOENT, os.stat, f"{m}/d/sub/x")
    write(f"{m}/d/new", "n")
    assert os.listdir(f"{m}/d") == ["new"]
    assert os.path.exists(f"{base}/upper/d/.wh..wh..opq")
    lowers_untouched(base)


def check_dir_rename(m, base):
    os.rename(f"{m}/tree", f"{m}/tree2")
    assert read(f"{m}/tree2/a/b/c") == "deep"
    assert read(f"{m}/tree2/top") == "t"
    assert not os.path.exists(f"{m}/tree")
    names = os.listdir(m)
    assert "tree2" in names and "tree" not in names, names
    os.rename(f"{m}/tree2/a", f"{m}/a2")
    assert read(f"{m}/a2/b/c") == "deep"
    # An upper-only folder renamed over an empty lower one.
    os.mkdir(f"{m}/fresh")
    write(f"{m}/fresh/f", "f")
    os.rename(f"{m}/fresh", f"{m}/a2/b2")
    assert os.listdir(f"{m}/a2/b2") == ["f"]
    # mv across folders (the kernel may say EXDEV only for cross-mount moves).
    os.rename(f"{m}/etc/passwd", f"{m}/a2/passwd")
    assert read(f"{m}/a2/passwd") == "root-top\n"
    assert not os.path.exists(f"{m}/etc/passwd")
    lowers_untouched(base)


def check_hardlinks(m, base):
    one, two = os.stat(f"{m}/hl/one"), os.stat(f"{m}/hl/two")
    assert one.st_ino == two.st_ino and one.st_nlink == 2
    with open(f"{m}/hl/one", "a") as f:
        f.write("more\n")
    assert read(f"{m}/hl/two") == "link\nmore\n", "the other name sees the write"
    assert os.stat(f"{m}/hl/two").st_ino == one.st_ino
    os.link(f"{m}/hl/two", f"{m}/hl/three")
    assert os.stat(f"{m}/hl/three").st_ino == one.st_ino
    assert os.stat(f"{m}/hl/three").st_nlink == 3
    with open(f"{m}/hl/three", "a") as f:
        f.write("3\n")
    assert read(f"{m}/hl/one") == "link\nmore\n3\n"
    os.unlink(f"{m}/hl/one")
    assert os.stat(f"{m}/hl/two").st_nlink == 2
    lowers_untouched(base)


def check_xattrs(m, base):
    if not xattrs_supported(f"{base}/upper"):
        print("skipped: the upper dir's filesystem has no user xattrs")
        return
    p = f"{m}/x/attr"
    assert os.getxattr(p, "user.k") == b"v"
    assert os.getxattr(p, "user.burrow.uid") == b"1000"
    os.setxattr(p, "user.new", b"n" * 300)
    assert set(os.listxattr(p)) >= {"user.k", "user.new", "user.burrow.uid"}
    assert os.getxattr(p, "user.new") == b"n" * 300
    assert os.getxattr(f"{base}/upper/x/attr", "user.k") == b"v", "xattrs copied up"
    os.removexattr(p, "user.k")
    expect_errno(errno.ENODATA, os.getxattr, p, "user.k")
    expect_errno(errno.ENODATA, os.getxattr, f"{m}/etc/hosts", "user.none")
    assert os.stat(p).st_mtime_ns == FIXED_NS, "times survive an xattr copy-up"
    lowers_untouched(base)


def check_owners(m, base):
    """Owner records (user.burrow.owner) survive copy-up and follow chown."""
    if not xattrs_supported(f"{base}/upper"):
        print("skipped: the upper dir's filesystem has no user xattrs")
        return
    up = f"{base}/upper/own"
    with open(f"{m}/own/kept", "a") as f:
        f.write("+")
    assert os.getxattr(f"{up}/kept", OWNER) == b"1000:1000:644", "copied with the file"
    # The one chown an unprivileged caller may make: to its own ids.
    uid, gid = os.getuid(), os.getgid()
    os.chown(f"{m}/own/mine", uid, gid)
    assert os.getxattr(f"{up}/mine", OWNER) == f"{uid}:{gid}:644".encode(), "record follows chown"
    os.chown(f"{m}/own/group", -1, gid)
    assert os.getxattr(f"{up}/group", OWNER) == f"1000:{gid}:644".encode(), "the uid stays"
    assert os.getxattr(f"{base}/l2/own/mine", OWNER) == b"1000:1000:644"
    lowers_untouched(base)


def check_mmap(m, base):
    with open(f"{m}/mm/data", "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as mm:
            mm[100:105] = b"HELLO"
            mm.flush()
    data = open(f"{m}/mm/data", "rb").read()
    assert data[100:105] == b"HELLO" and len(data) == 8192 and data[:100] == b"a" * 100
    # A new file grown and written through a mapping.
    with open(f"{m}/mm/new", "w+b") as f:
        f.truncate(65536)
        with mmap.mmap(f.fileno(), 65536) as mm:
            for i in range(0, 65536, 4096):
                mm[i : i + 4] = b"page"
    data = open(f"{m}/mm/new", "rb").read()
    assert data.count(b"page") == 16
    lowers_untouched(base)


def check_reads(m, base):
    """Reads that reach the server as READs of odd offsets and sizes: large
    ones (answered by splice), small ones, across the end of the file and
    larger than one answer, of a lower file and of an upper one."""
    want = pattern(BIG)
    # Through the page cache: READs of the readahead window.
    with open(f"{m}/big/data", "rb") as f:
        assert f.read() == want, "sequential read of a lower file"
    new = pattern(BIG + 777, seed=8)
    with open(f"{m}/big/new", "wb") as f:
        f.write(new)
    for path, data in ((f"{m}/big/data", want), (f"{m}/big/new", new)):
        # O_DIRECT: each pread is a READ of exactly this offset and size
        # (cut at the largest READ the kernel sends, 1 MiB).
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            n = len(data)
            cases = [
                (0, 65536),
                (12345, 200001),
                (4095, 131073),
                (n - 100000, 300000),  # spliced, cut by the end
                (n - 1000, 200000),  # too little left to splice
                (n, 4096),
                (n + 5, 70000),
                (1, 3 * 1024 * 1024),  # several answers, some too large to splice
                (777, 63 * 1024),
                (1 << 20, (1 << 20) - 8192),
            ]
            for off, size in cases:
                got = os.pread(fd, size, off)
                assert got == data[off : off + size], f"{path}: pread({size}, {off}) returned {len(got)} wrong bytes"
        finally:
            os.close(fd)
    lowers_untouched(base)


def check_concurrent(m, base):
    errors = []

    def own_file(i):
        try:
            with open(f"{m}/conc/w{i}", "wb") as f:
                for j in range(200):
                    f.write(bytes([65 + i]) * 4096)
        except Exception as e:  # reported below
            errors.append(e)

    def append_shared(i):
        try:
            fd = os.open(f"{m}/conc/shared", os.O_WRONLY | os.O_APPEND)
            for j in range(200):
                os.write(fd, f"{i:02}-{j:04}\n".encode())
            os.close(fd)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=own_file, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=append_shared, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        data = open(f"{m}/conc/w{i}", "rb").read()
        assert data == bytes([65 + i]) * 4096 * 200
    lines = read(f"{m}/conc/shared").splitlines()
    assert len(lines) == 800 and len(set(lines)) == 800, len(lines)
    # Readers while files come and go: a listing never repeats a name.
    stop = threading.Event()

    def churn():
        n = 0
        while not stop.is_set():
            write(f"{m}/many/new{n}", "x")
            os.unlink(f"{m}/many/new{n}")
            n += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(50):
            names = [e.name for e in os.scandir(f"{m}/many")]
            assert len(names) == len(set(names))
            assert sum(1 for n in names if n.startswith("f")) == 50
    finally:
        stop.set()
        t.join()
    lowers_untouched(base)


def check_misc(m, base):
    s = os.statvfs(m)
    assert s.f_blocks > 0 and s.f_bsize > 0
    # st_ino is stable and distinct.
    inos = {os.stat(f"{m}/many/f{i:03}").st_ino for i in range(50)}
    assert len(inos) == 50
    again = {os.stat(f"{m}/many/f{i:03}").st_ino for i in range(50)}
    assert inos == again
    assert os.stat(f"{m}/bin/link", follow_symlinks=False).st_ino != os.stat(f"{m}/etc/passwd").st_ino
    assert read(f"{m}/bin/link") == "root-top\n"
    assert stat.S_ISFIFO(os.lstat(f"{m}/bin/fifo").st_mode)
    # A Unix socket bound in the overlay.
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(f"{m}/bin/sock")
    assert stat.S_ISSOCK(os.lstat(f"{m}/bin/sock").st_mode)
    s.close()
    os.unlink(f"{m}/bin/sock")
    lowers_untouched(base)


def check_negative(m, base):
    """Names looked up while missing are cached by the kernel as negative
    entries; every way of making the name must still show it."""
    os.mkdir(f"{m}/neg")
    routes = {
        "open": lambda p: write(p, "o"),
        "excl": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
        "mkdir": lambda p: os.mkdir(p),
        "symlink": lambda p: os.symlink("target", p),
        "link": lambda p: os.link(f"{m}/neg/src-link", p),
        "rename": lambda p: os.rename(f"{m}/neg/src-rename", p),
        "fifo": lambda p: os.mkfifo(p),
    }
    write(f"{m}/neg/src-link", "l")
    write(f"{m}/neg/src-rename", "r")
    for name, make in routes.items():
        p = f"{m}/neg/{name}"
        for _ in range(2):
            assert not os.path.lexists(p), p
            expect_errno(errno.ENOENT, os.stat, p)
        make(p)
        assert os.path.lexists(p), f"{name}: made, yet not found"
        assert name in os.listdir(f"{m}/neg")
    assert read(f"{m}/neg/link") == "l" and read(f"{m}/neg/rename") == "r"
    assert not os.path.lexists(f"{m}/neg/src-rename")
    # In a lower folder: a name whited out, looked up, made again.
    os.unlink(f"{m}/etc/hosts")
    expect_errno(errno.ENOENT, os.stat, f"{m}/etc/hosts")
    write(f"{m}/etc/hosts", "back\n")
    assert read(f"{m}/etc/hosts") == "back\n"
    # A lower name never looked up before its folder is removed and remade.
    expect_errno(errno.ENOENT, os.stat, f"{m}/d/sub/none")
    os.unlink(f"{m}/d/sub/x")
    os.rmdir(f"{m}/d/sub")
    os.mkdir(f"{m}/d/sub")
    write(f"{m}/d/sub/none", "n")
    assert os.listdir(f"{m}/d/sub") == ["none"]
    # Markers stay invisible and cannot be made.
    expect_errno(errno.ENOENT, os.stat, f"{m}/etc/.wh.gone")
    expect_errno(errno.EINVAL, write, f"{m}/etc/.wh.gone", "")
    lowers_untouched(base)


def check_created(m, base):
    """Files made through the mount, as tar makes them (create, write, set
    the times through the descriptor): the server serves the steps after
    the create from the file it made."""
    when = 1_500_000_000_123_456_789
    places = {
        "new": f"{m}/new",  # a folder made through the mount: upper only
        "merged": f"{m}/d",  # upper and lower folders merged
        "lower": f"{m}/tree/a",  # a lower folder, copied up by the create
    }
    os.mkdir(places["new"])
    for where, d in places.items():
        for i, mode in enumerate((0o644, 0o600, 0o444, 0o755)):
            p = f"{d}/c{i}"
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.write(fd, f"{where}-{i}".encode() * 100)
            os.utime(fd, ns=(when, when + i))
            st = os.fstat(fd)
            os.close(fd)
            assert st.st_mtime_ns == when + i, (p, st.st_mtime_ns)
            st = os.stat(p)
            assert stat.S_IMODE(st.st_mode) == mode, (p, oct(st.st_mode))
            assert st.st_mtime_ns == when + i and st.st_size == len(f"{where}-{i}") * 100
            assert read(p) == f"{where}-{i}" * 100
            assert read(f"{base}/upper/{os.path.relpath(p, m)}") == f"{where}-{i}" * 100
        try:
            os.getxattr(f"{d}/c0", "security.capability")
            raise AssertionError("a new file has no capabilities")
        except OSError as e:
            assert e.errno in (errno.ENODATA, errno.ENOTSUP), e
    # Changed again after other files were made in between, and after a
    # rename: the server must find the file, not the one it made last.
    os.utime(f"{m}/new/c0", ns=(when, when + 10))
    os.rename(f"{m}/new/c1", f"{m}/new/moved")
    os.truncate(f"{m}/new/moved", 3)
    os.chmod(f"{m}/new/moved", 0o640)
    os.utime(f"{m}/new/moved", ns=(when, when + 11))
    st = os.stat(f"{m}/new/moved")
    assert (st.st_mtime_ns, st.st_size, stat.S_IMODE(st.st_mode)) == (when + 11, 3, 0o640), st
    assert os.stat(f"{m}/new/c0").st_mtime_ns == when + 10
    # Made, then replaced by a rename over it, then changed through its name.
    write(f"{m}/new/a", "a")
    write(f"{m}/new/b", "b")
    os.rename(f"{m}/new/b", f"{m}/new/a")
    os.utime(f"{m}/new/a", ns=(when, when + 12))
    assert read(f"{m}/new/a") == "b" and os.stat(f"{m}/new/a").st_mtime_ns == when + 12
    assert not os.path.exists(f"{base}/upper/d/.wh.c0")
    lowers_untouched(base)


def check_read_ahead(m, base):
    """A folder's files read one after another: the server stores the next
    small lower files in the kernel's cache before they are read
    (src/overlay/prefetch.rs). Readers must see every file's content; a
    file copied up before the listing is not stored ahead; and files stored
    ahead are read without asking the server, which a lower file changed
    behind the mount's back (never done in use: image layers are read-only)
    shows here."""
    scan, lower = f"{m}/scan", f"{base}/l2/scan"
    with open(f"{scan}/s030", "ab") as f:
        f.write(b"+appended")
    order = os.listdir(scan)
    assert sorted(order) == [f"s{i:03}" for i in range(SCAN_FILES)], order
    want = {f"s{i:03}": scan_content(i) for i in range(SCAN_FILES)}
    want["s030"] += b"+appended"

    def content(name):
        with open(f"{scan}/{name}", "rb") as f:
            return f.read()

    # Two reads of small files in listing order (the empty s000 does not
    # count): the rest is stored ahead, by a thread.
    for name in order[:3]:
        assert content(name) == want[name], name
    time.sleep(1)
    later = [n for n in order[3:] if n not in ("s030", "s040") and want[n]]
    probe = later[len(later) // 2]
    original = want[probe]
    changed = bytes(b ^ 0xFF for b in original)
    before = os.stat(f"{lower}/{probe}")
    with open(f"{lower}/{probe}", "r+b") as f:
        f.write(changed)
    try:
        got = content(probe)
    finally:
        with open(f"{lower}/{probe}", "r+b") as f:
            f.write(original)
        os.utime(f"{lower}/{probe}", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert got == original, f"{probe} was read from the server, not stored ahead"
    for name in order:
        assert content(name) == want[name], f"{name}: wrong content"
    # A file stored ahead and then written through the mount reads back
    # what was written.
    victim = later[-1]
    with open(f"{scan}/{victim}", "r+b") as f:
        f.write(b"NEW")
    assert content(victim) == b"NEW" + want[victim][3:]
    with open(f"{lower}/{victim}", "rb") as f:
        assert f.read() == want[victim], "the lower file changed"


def check_setid(m, base):
    """A write or a truncate by a caller without CAP_FSETID clears the
    set-user-id bit, and the set-group-id bit where the group may execute
    (the server does it: FUSE_HANDLE_KILLPRIV_V2). Run as a user who is
    not root."""
    assert os.getuid() != 0
    f = f"{m}/new/tool"
    os.makedirs(f"{m}/new", exist_ok=True)
    write(f, "#!/bin/sh\n", 0o755)

    def mode():
        return stat.S_IMODE(os.stat(f).st_mode)

    os.chmod(f, 0o6755)
    assert mode() == 0o6755
    with open(f, "a") as out:
        out.write("echo hi\n")
    assert mode() == 0o755, oct(mode())
    os.chmod(f, 0o4755)
    os.truncate(f, 3)
    assert mode() == 0o755, oct(mode())
    # Set-group-id without group execute marks mandatory locking: kept.
    os.chmod(f, 0o2745)
    os.truncate(f, 1)
    assert mode() == 0o2745, oct(mode())
    # Many small writes: each still lands, and no set-id bit comes back.
    with open(f, "wb") as out:
        for i in range(200):
            out.write(bytes([i]) * 64)
    with open(f, "rb") as got:
        assert got.read() == b"".join(bytes([i]) * 64 for i in range(200))
    # A copied-up lower file: the same.
    lower = f"{m}/bin/tool"
    os.chmod(lower, 0o4755)
    os.truncate(lower, 0)
    assert stat.S_IMODE(os.stat(lower).st_mode) == 0o755
    lowers_untouched(base)


OVERLAY = {
    "setid": check_setid,
    "read_ahead": check_read_ahead,
    "negative": check_negative,
    "created": check_created,
    "copy_up": check_copy_up,
    "whiteouts": check_whiteouts,
    "opaque": check_opaque,
    "dir_rename": check_dir_rename,
    "hardlinks": check_hardlinks,
    "xattrs": check_xattrs,
    "owners": check_owners,
    "mmap": check_mmap,
    "reads": check_reads,
    "concurrent": check_concurrent,
    "misc": check_misc,
}


def after(case, base):
    """What the upper dir holds once unmounted: an OCI layer diff."""
    up = f"{base}/upper"
    if case == "whiteouts":
        assert read(f"{up}/etc/hosts") == "again\n"
        assert not os.path.exists(f"{up}/etc/.wh.hosts")
    elif case == "opaque":
        assert os.path.exists(f"{up}/d/.wh..wh..opq")
        assert os.listdir(f"{up}/d") and not os.path.exists(f"{up}/.wh.d")
    elif case == "dir_rename":
        assert os.path.exists(f"{up}/.wh.tree")
        assert os.path.exists(f"{up}/tree2/.wh..wh..opq")
        assert os.path.exists(f"{up}/etc/.wh.passwd")
    elif case == "hardlinks":
        assert os.stat(f"{up}/hl/two").st_ino == os.stat(f"{up}/hl/three").st_ino
        assert os.path.exists(f"{up}/hl/.wh.one")
    elif case == "created":
        assert sorted(os.listdir(f"{up}/new")) == ["a", "c0", "c2", "c3", "moved"]
        assert not [n for n in os.listdir(f"{up}/d") if n.startswith(".wh.")]
    elif case == "negative":
        assert read(f"{up}/etc/hosts") == "back\n"
        assert not os.path.exists(f"{up}/etc/.wh.hosts")
        assert os.path.exists(f"{up}/d/sub/.wh..wh..opq")
    leftovers = os.listdir(f"{base}/work")
    assert leftovers == [], f"staging leftovers: {leftovers}"
    lowers_untouched(base)


# ---------------------------------------------------------------- POSIX checks


def posix(root):
    d = os.path.join(root, "px")
    os.mkdir(d, 0o755)
    os.umask(0o022)
    uid, gid = os.getuid(), os.getgid()

    # open / create
    fd = os.open(f"{d}/f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    os.close(fd)
    st = os.stat(f"{d}/f")
    assert stat.S_IMODE(st.st_mode) == 0o644, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert st.st_size == 0 and st.st_nlink == 1
    expect_errno(errno.EEXIST, os.open, f"{d}/f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    expect_errno(errno.ENOENT, os.open, f"{d}/none", os.O_RDONLY)
    expect_errno(errno.ENOTDIR, os.open, f"{d}/f/x", os.O_RDONLY)
    os.umask(0o077)
    os.close(os.open(f"{d}/g", os.O_CREAT | os.O_WRONLY, 0o666))
    assert stat.S_IMODE(os.stat(f"{d}/g").st_mode) == 0o600
    os.umask(0o022)
    fd = os.open(f"{d}/f", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"0123456789")
    os.close(fd)
    fd = os.open(f"{d}/f", os.O_RDWR | os.O_APPEND)
    os.write(fd, b"ab")
    os.lseek(fd, 0, os.SEEK_SET)
    assert os.read(fd, 100) == b"0123456789ab"
    os.close(fd)

    # truncate
    os.truncate(f"{d}/f", 4)
    assert os.stat(f"{d}/f").st_size == 4 and read(f"{d}/f") == "0123"
    os.truncate(f"{d}/f", 10000)
    data = open(f"{d}/f", "rb").read()
    assert len(data) == 10000 and data[4:] == b"\0" * 9996
    with open(f"{d}/f", "r+b") as f:
        os.ftruncate(f.fileno(), 2)
    assert os.stat(f"{d}/f").st_size == 2

    # chmod (ctime moves), chown
    before = os.stat(f"{d}/f")
    os.chmod(f"{d}/f", 0o4751)
    st = os.stat(f"{d}/f")
    assert stat.S_IMODE(st.st_mode) == 0o4751 and st.st_ctime_ns >= before.st_ctime_ns
    os.chmod(f"{d}/f", 0o644)
    os.chown(f"{d}/f", uid, gid)
    os.chown(f"{d}/f", -1, -1)
    if uid != 0:
        expect_errno(errno.EPERM, os.chown, f"{d}/f", uid + 1, -1)

    # utimensat
    os.utime(f"{d}/f", ns=(FIXED_NS, FIXED_NS + 1))
    st = os.stat(f"{d}/f")
    assert (st.st_atime_ns, st.st_mtime_ns) == (FIXED_NS, FIXED_NS + 1)
    os.utime(f"{d}/f")
    assert os.stat(f"{d}/f").st_mtime_ns > FIXED_NS + 1
    with open(f"{d}/f", "a") as f:
        f.write("x")
    os.symlink("f", f"{d}/s")
    os.utime(f"{d}/s", ns=(FIXED_NS, FIXED_NS), follow_symlinks=False)
    assert os.lstat(f"{d}/s").st_mtime_ns == FIXED_NS
    assert os.stat(f"{d}/f").st_mtime_ns != FIXED_NS, "the target is not touched"

    # symlink
    assert os.readlink(f"{d}/s") == "f"
    assert stat.S_ISLNK(os.lstat(f"{d}/s").st_mode)
    assert os.stat(f"{d}/s").st_ino == os.stat(f"{d}/f").st_ino
    expect_errno(errno.ELOOP, os.open, f"{d}/s", os.O_RDONLY | os.O_NOFOLLOW)
    expect_errno(errno.EEXIST, os.symlink, "x", f"{d}/s")
    os.symlink("dangling", f"{d}/dl")
    expect_errno(errno.ENOENT, os.stat, f"{d}/dl")

    # link
    os.link(f"{d}/f", f"{d}/f2")
    assert os.stat(f"{d}/f").st_nlink == 2
    assert os.stat(f"{d}/f2").st_ino == os.stat(f"{d}/f").st_ino
    expect_errno(errno.EEXIST, os.link, f"{d}/f", f"{d}/f2")
    os.mkdir(f"{d}/dir")
    expect_errno(errno.EPERM, os.link, f"{d}/dir", f"{d}/dir2")
    os.unlink(f"{d}/f2")
    assert os.stat(f"{d}/f").st_nlink == 1

    # mkdir / rmdir
    os.mkdir(f"{d}/m", 0o750)
    assert stat.S_IMODE(os.stat(f"{d}/m").st_mode) == 0o750
    expect_errno(errno.EEXIST, os.mkdir, f"{d}/m")
    expect_errno(errno.EEXIST, os.mkdir, f"{d}/f")
    write(f"{d}/m/inner", "i")
    expect_errno(errno.ENOTEMPTY, os.rmdir, f"{d}/m")
    expect_errno(errno.ENOTDIR, os.rmdir, f"{d}/f")
    expect_errno(errno.ENOENT, os.rmdir, f"{d}/none")
    os.unlink(f"{d}/m/inner")
    os.rmdir(f"{d}/m")
    expect_errno(errno.ENOENT, os.stat, f"{d}/m")

    # unlink
    expect_errno(errno.ENOENT, os.unlink, f"{d}/none")
    expect_errno(errno.EISDIR, os.unlink, f"{d}/dir")
    fd = os.open(f"{d}/g", os.O_RDWR)
    os.unlink(f"{d}/g")
    os.write(fd, b"still open")
    os.lseek(fd, 0, 0)
    assert os.read(fd, 100) == b"still open", "an unlinked open file keeps working"
    assert os.fstat(fd).st_nlink == 0
    os.close(fd)

    # rename
    write(f"{d}/r1", "one")
    write(f"{d}/r2", "two")
    os.rename(f"{d}/r1", f"{d}/r2")
    assert read(f"{d}/r2") == "one" and not os.path.exists(f"{d}/r1")
    os.rename(f"{d}/r2", f"{d}/r2")
    os.mkdir(f"{d}/rd1")
    os.mkdir(f"{d}/rd2")
    write(f"{d}/rd1/in", "in")
    os.rename(f"{d}/rd1", f"{d}/rd2")
    assert read(f"{d}/rd2/in") == "in"
    os.mkdir(f"{d}/rd3")
    write(f"{d}/rd3/x", "x")
    expect_errno(errno.ENOTEMPTY, os.rename, f"{d}/rd2", f"{d}/rd3")
    expect_errno(errno.EISDIR, os.rename, f"{d}/r2", f"{d}/rd3")
    expect_errno(errno.ENOTDIR, os.rename, f"{d}/rd3", f"{d}/r2")
    expect_errno(errno.EINVAL, os.rename, f"{d}/rd3", f"{d}/rd3/sub")
    ino = os.stat(f"{d}/r2").st_ino
    os.rename(f"{d}/r2", f"{d}/rd3/r2")
    assert os.stat(f"{d}/rd3/r2").st_ino == ino, "rename keeps the inode"

    # mknod: fifos
    os.mkfifo(f"{d}/fifo", 0o640)
    st = os.lstat(f"{d}/fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640

    # readdir
    names = sorted(os.listdir(d))
    assert names == ["dir", "dl", "f", "fifo", "rd2", "rd3", "s"], names
    shutil.rmtree(d)
    assert not os.path.exists(d)


def main(argv):
    cmd = argv[1]
    if cmd == "setup":
        setup(argv[2])
    elif cmd == "overlay":
        OVERLAY[argv[2]](argv[3], argv[4])
    elif cmd == "posix":
        posix(argv[2])
    elif cmd == "after":
        after(argv[2], argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")
    print("ok")


if __name__ == "__main__":
    main(sys.argv)
