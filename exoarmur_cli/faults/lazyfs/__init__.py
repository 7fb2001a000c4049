"""A lazy FUSE file system for power-loss faults: writes stay in memory until fsync.

``LazyMount`` (harness side) runs one as its own process and triggers power losses;
``fs.LazyFS`` is the file system itself (imported only by that process: it loads libfuse).
"""

from exoarmur_cli.faults.lazyfs.mount import (
    LazyFSReason, LazyFSUnavailable, LazyMount, clean_stale_mounts, is_mounted, unavailable_reason,
)

__all__ = ["LazyFSReason", "LazyFSUnavailable", "LazyMount", "clean_stale_mounts", "is_mounted",
           "unavailable_reason"]
