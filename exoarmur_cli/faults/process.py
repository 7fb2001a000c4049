"""Process faults on the embedded stack: SIGKILL, SIGTERM restart, pause (SIGSTOP) and resume.

A target is a component name; ``nats`` on a cluster is every one of its servers (a node alone is
``nats-0`` …). Only a stack whose processes the harness started (``LocalStack``) can be faulted this way; an
external stack gives no process control, and a scenario that asks for it is NOT RUN (see
``stacks.ExternalStack``). Every fault is recorded as a nemesis event (``nemesis.record``).
"""

from __future__ import annotations

import signal

from exoarmur_cli.faults.nemesis import record
from exoarmur_cli.history import History
from exoarmur_cli.stack import LocalStack


class ProcessFaults:
    def __init__(self, stack: LocalStack, history: History | None = None) -> None:
        self.stack = stack
        self.history = history

    @property
    def cells(self) -> list[str]:
        return [name for name in self.stack.children if name.startswith("cell")]

    def kill(self, target: str) -> None:
        """SIGKILL ``target``: no chance to finish anything."""
        record(self.history, "kill", target=target, signal="SIGKILL")
        for name in self.stack.members(target):
            self.stack.children[name].kill()

    def start(self, target: str) -> None:
        """Start ``target`` again on the same state (after ``kill``)."""
        self.stack.start_component(target)
        record(self.history, "start", target=target)

    def pause(self, target: str) -> None:
        record(self.history, "pause", target=target)
        for name in self.stack.members(target):
            self.stack.children[name].signal(signal.SIGSTOP)

    def resume(self, target: str) -> None:
        for name in self.stack.members(target):
            self.stack.children[name].signal(signal.SIGCONT)
        record(self.history, "resume", target=target)

    def restart(self, target: str, *, hard: bool = False) -> None:
        """Stop (SIGTERM, or SIGKILL when ``hard``) and start again on the same state; recorded as
        ``restart_<target>`` with its mode."""
        record(self.history, f"restart_{target}", mode="SIGKILL" if hard else "SIGTERM")
        children = [self.stack.children[name] for name in self.stack.members(target)]
        for child in children:
            child.kill() if hard else child.request_stop()
        if not hard:
            for child in children:
                child.finish_stop()
        self.stack.start_component(target)
        self.stack.write_pids()
