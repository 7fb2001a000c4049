"""Starting the stack when a nats-server cannot: the error names why, at once, from the server's log."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from pathlib import Path

import pytest

from exoarmur import stackconfig
from exoarmur_cli.errors import StackError
from exoarmur_cli.procs import Child
from exoarmur_cli.stack import LocalStack
from exoarmur_cli.stacks import EmbeddedStack

pytestmark = pytest.mark.integration


def test_a_nats_server_that_exits_is_reported_at_once_with_its_log(tmp_path):
    config = stackconfig.generate(tmp_path / "stack", tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    stack = LocalStack(config)
    with socket.socket() as squatter:  # the port was taken after it was chosen (bound, not listening)
        squatter.bind((config.host, config.nats_port))
        began = time.monotonic()
        try:
            with pytest.raises(StackError) as caught:
                stack.start_component("nats")
        finally:
            stack.stop()
    assert time.monotonic() - began < 8.0  # not the 10 s wait for a port that will never open
    assert "nats exited" in str(caught.value)
    assert "address already in use" in str(caught.value)


def _started(stack: EmbeddedStack) -> bool:
    return stack.stack_dir is not None


def _effector_starting(stack: EmbeddedStack) -> bool:
    return stack.stack_dir is not None and (stack.stack_dir / "logs" / "effector.log").exists()


@pytest.mark.parametrize("cancel_when", [_started, _effector_starting], ids=["at-once", "effector-starting"])
def test_a_start_cancelled_midway_leaves_no_process_and_no_directory(tmp_path, monkeypatch, cancel_when):
    """Ctrl-C cancels the task awaiting the start, not the thread doing it: that thread used to start
    the next components after the run had stopped the stack and removed its directory (the logs'
    directory came back, and the components with it). Each component's start is slowed down, as on
    a loaded machine, so the thread is still at it when the cancel lands."""
    real_start = Child.start

    def slow_start(child, *args, **kwargs):
        time.sleep(0.4)
        real_start(child, *args, **kwargs)

    monkeypatch.setattr(Child, "start", slow_start)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # read TMPDIR again
    stack = EmbeddedStack(seed=3, overrides={}, defects=[])

    async def cancelled_up() -> Path:
        task = asyncio.ensure_future(stack.up(lambda _line: None))
        while not cancel_when(stack):
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stack_dir = stack.stack_dir
        stack.discard()  # inside the loop, as a run does: asyncio.run's end waits for the threads
        return stack_dir

    try:
        stack_dir = asyncio.run(cancelled_up())
        assert not stack_dir.exists()
        assert stack.local is not None and not any(child.alive() for child in stack.local.children.values())
    finally:
        tempfile.tempdir = None
        if stack.local is not None:
            stack.local.stop()
