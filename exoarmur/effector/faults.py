"""The faults the effector injects into ``/v1/effects``, set at run time, drawn from a seeded RNG."""

from __future__ import annotations

import asyncio
import random
import time

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

HANG_S = 3600.0  # a hung effector answers only when the caller's deadline has given up on it
HANG_POLL_S = 0.05


class FaultSettings(BaseModel):
    """The faults the effector injects into ``/v1/effects``; all off by default."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    # Applied, then the answer is lost (503 after the ledger write): the caller cannot tell
    # this from a failure before the write, so only the idempotency key keeps it to one effect.
    lose_response_rate: float = Field(default=0.0, ge=0, le=1)
    # Refused before applying (422): the request itself is wrong, so another attempt would be too.
    reject_rate: float = Field(default=0.0, ge=0, le=1)
    hang: bool = False
    down: bool = False
    seed: int | None = None



def fault_delay_s(settings: FaultSettings, rng: random.Random) -> float:
    """The injected delay in seconds: latency plus a uniform draw of jitter from ``rng``.

    Draws from ``rng`` only when there is jitter, so the sequence is reproducible per seed.
    """
    delay_ms = settings.latency_ms
    if settings.jitter_ms > 0:
        delay_ms += rng.uniform(0.0, settings.jitter_ms)
    return delay_ms / 1000.0


def fault_errors(settings: FaultSettings, rng: random.Random) -> bool:
    """Whether this call fails with an injected error; draws from ``rng`` only if it may."""
    return settings.error_rate > 0 and rng.random() < settings.error_rate


def fault_rejects(settings: FaultSettings, rng: random.Random) -> bool:
    """Whether this call is refused as a bad request; draws from ``rng`` only if it may."""
    return settings.reject_rate > 0 and rng.random() < settings.reject_rate



async def hang(request: Request) -> None:
    """Hold the call up to ``HANG_S``, ending as soon as the caller gives up on it.

    Polling for the disconnect (rather than one long sleep) leaves no orphaned task behind
    a timed-out caller, so a graceful shutdown has nothing to wait for or cancel.
    """
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(HANG_POLL_S)
