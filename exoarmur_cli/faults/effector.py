"""Effector faults: the effector's own run-time fault settings (latency, jitter, error rate,
lost responses, hang, down), set through its public ``PUT /v1/faults`` and recorded as a
nemesis event (``effector_faults``, with ``applied``: whether the effector took them)."""

from __future__ import annotations

from typing import Any

import aiohttp

from exoarmur_cli.faults.nemesis import record
from exoarmur_cli.history import History


class EffectorFaults:
    def __init__(self, session: aiohttp.ClientSession, effector_url: str, token: str,
                 history: History | None = None) -> None:
        self.session = session
        self.effector_url = effector_url
        self.headers = {"Authorization": f"Bearer {token}"}  # the harness's credential at the effector
        self.history = history

    async def set(self, **settings: Any) -> None:
        """Apply ``settings``; no settings clears every fault."""
        async with self.session.put(f"{self.effector_url}/v1/faults", json=settings, headers=self.headers) as response:
            await response.read()
            ok = response.status == 200
        record(self.history, "effector_faults", **settings, applied=ok)

    async def clear(self) -> None:
        await self.set()
