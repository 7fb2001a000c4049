"""The error hierarchy of the stack. Every error carries a reason code from one enum."""

from __future__ import annotations

from exoarmur.contracts import ReasonCode


class ExoError(Exception):
    """Root of every error the stack raises on purpose; ``reason_code`` says why."""

    reason_code: ReasonCode = ReasonCode.INTERNAL_ERROR

    def __init__(self, message: str, reason_code: ReasonCode | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code


class DeadlineExceeded(ExoError):
    """An operation ran past its deadline from the timeout table (reason TIMEOUT_<CATEGORY>)."""


class RetryExhausted(ExoError):
    """Every attempt the retry policy allows failed with a retryable error."""

    reason_code = ReasonCode.RETRY_EXHAUSTED

    def __init__(self, message: str, attempts: int, last_error: BaseException | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.last_error = last_error


class BreakerOpen(ExoError):
    """The circuit breaker refused the call without trying it."""

    reason_code = ReasonCode.BREAKER_OPEN


class ConfigError(ExoError):
    """A stack config file is missing, unreadable or invalid."""

    reason_code = ReasonCode.CONFIG_INVALID
