"""``LazyFS``: a pass-through FUSE file system whose unsynced writes a power loss discards.

Every path under the mount is the same path under a backing directory. Data is lazy, per file
(``pagecache.CachedFile``): the backing file holds what fsync/fdatasync made durable, the rest
lives in memory until the next sync or a power loss. Metadata follows ext4's ordered mode
closely enough for a database to restart on what is left:

* a file created since its last fsync (and since its directory's last fsync) disappears on
  power loss; one that was fsynced keeps its name;
* truncation and extension are part of the file's unsynced state (lost with its data);
* rename first makes the source file's data durable (ext4's replace-via-rename rule), then
  renames in the backing directory, durably; unlink, mkdir and rmdir are durable at once
  (libfuse turns the unlink of an open file into a rename to ``.fuse_hidden*``, unlinked on close);
* a clean unmount syncs everything (a clean shutdown flushes the page cache).

``power_loss()`` is called from another thread (the control socket); one lock serialises it
with every file operation, so a power loss happens between two operations, never inside one.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field

import mfusepy

from exoarmur_cli.faults.lazyfs.pagecache import CachedFile

_STAT_FIELDS = ("st_mode", "st_ino", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks",
                "st_atime_ns", "st_mtime_ns", "st_ctime_ns")


@dataclass
class Node:
    """One open (or still dirty) file: its backing descriptor and unsynced state."""

    path: str | None  # None once unlinked or replaced
    fd: int
    cache: CachedFile
    refs: int = 0
    closed: bool = False
    append_handles: set[int] = field(default_factory=set)


class LazyFS(mfusepy.Operations):
    use_ns = True  # times in nanoseconds

    def __init__(self, backing: str) -> None:
        self.root = os.path.realpath(backing)
        self._mutex = threading.RLock()
        self.mounted = False
        self.nodes: dict[str, Node] = {}
        self.handles: dict[int, Node] = {}
        self.unsynced_creates: set[str] = set()
        self.next_fh = 1
        self.totals = {"power_losses": 0, "bytes_dropped": 0, "bytes_synced": 0, "fsyncs": 0}

    # --- helpers ---------------------------------------------------------------------------

    def _real(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _node(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            fd = os.open(self._real(path), os.O_RDWR)
            node = Node(path, fd, CachedFile(fd))
            self.nodes[path] = node
        return node

    def _by(self, path: str | None, fh: int | None) -> Node | None:
        if fh is not None and fh in self.handles:
            return self.handles[fh]
        return self.nodes.get(path) if path is not None else None

    def _handle(self, node: Node, flags: int) -> int:
        fh = self.next_fh
        self.next_fh += 1
        node.refs += 1
        self.handles[fh] = node
        if flags & os.O_APPEND:
            node.append_handles.add(fh)
        return fh

    def _forget_if_idle(self, node: Node) -> None:
        if node.closed or node.refs > 0 or (node.path is not None and node.cache.dirty):
            return
        if node.path is not None and self.nodes.get(node.path) is node:
            del self.nodes[node.path]
        node.closed = True
        os.close(node.fd)

    def _detach(self, path: str) -> None:
        """``path`` no longer names its node (unlinked or replaced): its unsynced data is moot."""
        node = self.nodes.pop(path, None)
        if node is not None:
            node.path = None
            self._forget_if_idle(node)

    def init(self, path):
        self.mounted = True

    # --- attributes and directories --------------------------------------------------------

    def getattr(self, path, fh=None):
        with self._mutex:
            node = self._by(path, fh)
            st = os.fstat(node.fd) if node is not None else os.lstat(self._real(path))
            attrs = {name.removesuffix("_ns"): getattr(st, name) for name in _STAT_FIELDS}
            if node is not None:
                attrs["st_size"] = node.cache.size
                attrs["st_blocks"] = (node.cache.size + 511) // 512
            return attrs

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._real(path), ns=times)

    def access(self, path, amode):
        if not os.access(self._real(path), amode):
            raise mfusepy.FuseOSError(errno.EACCES)

    def readlink(self, path):
        return os.readlink(self._real(path))

    def symlink(self, target, source):
        os.symlink(source, self._real(target))

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        return {key: getattr(st, key) for key in ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
                                                  "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}

    def fsyncdir(self, path, datasync, fh):
        with self._mutex:
            prefix = path.rstrip("/") + "/"
            self.unsynced_creates = {p for p in self.unsynced_creates
                                     if not (p.startswith(prefix) and "/" not in p[len(prefix):])}
            fd = os.open(self._real(path), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # --- files -----------------------------------------------------------------------------

    def create(self, path, mode, flags=0):
        with self._mutex:
            real = self._real(path)
            existed = os.path.lexists(real)
            os.close(os.open(real, os.O_RDWR | os.O_CREAT | (flags & os.O_EXCL), mode))
            if not existed:
                self.unsynced_creates.add(path)
            node = self._node(path)
            if flags & os.O_TRUNC:
                node.cache.truncate(0)
            return self._handle(node, flags)

    def open(self, path, flags):
        with self._mutex:
            node = self._node(path)
            if flags & os.O_TRUNC:
                node.cache.truncate(0)
            return self._handle(node, flags)

    def read(self, path, size, offset, fh):
        with self._mutex:
            return self.handles[fh].cache.read(size, offset)

    def write(self, path, data, offset, fh):
        with self._mutex:
            node = self.handles[fh]
            if fh in node.append_handles:
                offset = node.cache.size
            return node.cache.write(data, offset)

    def truncate(self, path, length, fh=None):
        with self._mutex:
            node = self._by(path, fh) or self._node(path)
            node.cache.truncate(length)
            self._forget_if_idle(node)

    def fsync(self, path, datasync, fh):
        with self._mutex:
            node = self.handles[fh]
            self.totals["bytes_synced"] += node.cache.sync(bool(datasync))
            self.totals["fsyncs"] += 1
            if node.path is not None:
                self.unsynced_creates.discard(node.path)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        with self._mutex:
            node = self.handles.pop(fh, None)
            if node is not None:
                node.refs -= 1
                node.append_handles.discard(fh)
                self._forget_if_idle(node)

    def unlink(self, path):
        with self._mutex:
            os.unlink(self._real(path))
            self.unsynced_creates.discard(path)
            self._detach(path)

    def rename(self, old, new):
        with self._mutex:
            node = self.nodes.get(old)
            if node is not None and node.cache.dirty:
                self.totals["bytes_synced"] += node.cache.sync()
            os.rename(self._real(old), self._real(new))
            self._detach(new)
            old_prefix = old.rstrip("/") + "/"
            for path in [p for p in self.nodes if p == old or p.startswith(old_prefix)]:
                moved = new + path[len(old):]
                self.nodes[moved] = self.nodes.pop(path)
                self.nodes[moved].path = moved
            self.unsynced_creates = {p for p in self.unsynced_creates if p != old and p != new
                                     and not p.startswith(old_prefix)}

    # --- power ----------------------------------------------------------------------------

    def power_loss(self) -> dict:
        """Discard every unsynced write, size change and create; returns what was lost."""
        with self._mutex:
            files = []
            nodes = {id(n): n for n in list(self.nodes.values()) + list(self.handles.values())}
            for node in nodes.values():
                lost = node.cache.drop()
                if lost.bytes_written or lost.dirty_pages or lost.truncated:
                    files.append({"path": node.path, "bytes": lost.bytes_written, "pages": lost.dirty_pages,
                                  "size_change": lost.truncated})
            removed = []
            for path in sorted(self.unsynced_creates):
                try:
                    os.unlink(self._real(path))
                    removed.append(path)
                except OSError:
                    pass
                self._detach(path)
            self.unsynced_creates.clear()
            for node in nodes.values():
                self._forget_if_idle(node)
            dropped = sum(f["bytes"] for f in files)
            self.totals["power_losses"] += 1
            self.totals["bytes_dropped"] += dropped
            return {"bytes_dropped": dropped, "files_dropped": len(files), "creates_dropped": len(removed),
                    "files": sorted(files, key=lambda f: -f["bytes"])[:20], "creates": removed[:20]}

    def stats(self) -> dict:
        with self._mutex:
            unsynced = sum(n.cache.bytes_written for n in {id(n): n for n in
                           list(self.nodes.values()) + list(self.handles.values())}.values())
            return {**self.totals, "unsynced_bytes": unsynced, "open_handles": len(self.handles)}

    def sync_all(self) -> None:
        """A clean unmount: flush every dirty file (a clean shutdown flushes the page cache)."""
        with self._mutex:
            for node in list(self.nodes.values()):
                if node.cache.dirty:
                    node.cache.sync()

    def destroy(self, path):
        self.sync_all()
        with self._mutex:
            for node in {id(n): n for n in list(self.nodes.values()) + list(self.handles.values())}.values():
                if not node.closed:
                    node.closed = True
                    os.close(node.fd)
            self.nodes.clear()
            self.handles.clear()
