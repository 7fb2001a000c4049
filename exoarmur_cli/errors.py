"""The harness's own errors: one root carrying a reason code, four families.

The stack's errors (``exoarmur.errors.ExoError``) belong to the system under test; the harness
raises its own, and the CLI maps both to exit codes at its boundary (``main.exit_code_for``):

- ``StackError``   the stack could not be started, reached or made ready (exit 3).
- ``FaultError``   a fault cannot be injected into this stack (e.g. process faults on an external
                   stack); a scenario that needs it is NOT RUN, so its gates are INCOMPLETE.
- ``ScenarioError`` a scenario could not be driven; ``ScenarioNotRun``: this stack cannot give
                   what it needs (its gates are INCOMPLETE, never green).
- ``EvidenceError`` a gate file, scenario file or bundle is unreadable or invalid (exit 2): the
                   inputs and outputs of judging. ``ConfigError`` covers gate and scenario files.
"""

from __future__ import annotations

from exoarmur.contracts import ReasonCode


class HarnessError(Exception):
    """Root of every error the harness raises on purpose; ``reason_code`` says why."""

    reason_code: ReasonCode = ReasonCode.INTERNAL_ERROR

    def __init__(self, message: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class StackError(HarnessError):
    """The stack could not be started, reached or made ready."""

    reason_code = ReasonCode.STACK_UNAVAILABLE


class FaultError(HarnessError):
    """A fault cannot be injected into this stack (it gives no control over that part)."""

    reason_code = ReasonCode.STACK_UNAVAILABLE


class ScenarioError(HarnessError):
    """A scenario could not be driven."""

    reason_code = ReasonCode.STACK_UNAVAILABLE


class ScenarioNotRun(ScenarioError):
    """The scenario needs something this stack cannot give (e.g. process faults on an external
    stack). Its gates become INCOMPLETE, never green."""


class EvidenceError(HarnessError):
    """What judging reads or writes (gate files, scenario files, a bundle) is unreadable or invalid."""

    reason_code = ReasonCode.CONFIG_INVALID


class ConfigError(EvidenceError):
    """A gate or scenario file is unreadable or says something that cannot be run or judged."""
