"""Where FUSE cannot be used, the reason is named (and the power-loss scenario is not run)."""

from __future__ import annotations

from exoarmur_cli.faults.lazyfs import LazyFSReason, mount


def test_missing_dev_fuse_is_named(monkeypatch):
    monkeypatch.setattr(mount.os.path, "exists", lambda path: path != "/dev/fuse")
    problem = mount.unavailable_reason()
    assert problem is not None and problem.reason == LazyFSReason.NO_DEV_FUSE
    assert str(problem).startswith("NO_DEV_FUSE:")


def test_missing_fusermount_is_named(monkeypatch):
    monkeypatch.setattr(mount.os.path, "exists", lambda path: True)
    monkeypatch.setattr(mount.shutil, "which", lambda name: None)
    problem = mount.unavailable_reason()
    assert problem is not None and problem.reason == LazyFSReason.NO_FUSERMOUNT
    assert "fuse3" in str(problem)
