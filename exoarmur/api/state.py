"""What one api process holds: its config, NATS handles, limiter, pending estimate and counters."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from exoarmur import natsio
from exoarmur.clock import now_ms
from exoarmur.contracts import ReasonCode, RefusalCounterV1
from exoarmur.reliability.rate_limit import RATE_LIMITS, RateLimitPolicy, TenantLimiter
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline
from exoarmur.stackconfig import StackConfig

if TYPE_CHECKING:
    from exoarmur.api.admission import Admission
    from exoarmur.api.publisher import Publisher
    from exoarmur.api.reads import AuditScope


def _rate_policy(name: str, config: StackConfig) -> RateLimitPolicy:
    """The table's policy, unless this stack's config overrides it (``rate_<name>_per_s/_burst``)."""
    base = RATE_LIMITS[name]
    return replace(
        base,
        rate_per_s=float(config.overrides.get(f"rate_{name}_per_s", base.rate_per_s)),
        burst=int(config.overrides.get(f"rate_{name}_burst", base.burst)),
    )


class ApiState:
    """What one api process holds: its NATS connection, limiter, refusal counters, and the seams
    (admission, publisher, audit scope) as chosen at start-up."""

    def __init__(self, config: StackConfig, nats_url: str | None, *, admission: Admission,
                 publisher: Publisher, audit_scope: AuditScope) -> None:
        self.config = config
        self.admission, self.publisher, self.audit_scope = admission, publisher, audit_scope
        self.nats_url = nats_url or config.nats_url
        self.api_id = f"api-{os.getpid()}"
        self.peers_by_token = config.peer_by_token()
        self.limiter = TenantLimiter(_rate_policy("tenant", config), _rate_policy("global", config))
        self.max_pending = config.bound("pending_intents")
        self.pending_estimate = 0
        self.refusals: dict[tuple[str, ReasonCode], int] = {}
        self.refusals_total: dict[tuple[str, str], int] = {}
        self.window_start_ms = now_ms()
        self.flush_seq = 0
        self.submitted = 0
        self.duplicates = 0
        self.nc = None
        self.js = None

    def count_refusal(self, tenant_id: str, reason: ReasonCode) -> None:
        key = (tenant_id, reason)
        self.refusals[key] = self.refusals.get(key, 0) + 1
        total_key = (tenant_id, reason.value)
        self.refusals_total[total_key] = self.refusals_total.get(total_key, 0) + 1

    async def flush_refusals(self) -> None:
        """Publish the counters gathered since the last flush to the EVENTS stream, one per
        (tenant, reason); a count that cannot be published goes out with the next flush."""
        if not self.refusals or self.js is None:
            return
        batch, self.refusals = self.refusals, {}
        end_ms = now_ms()
        self.flush_seq += 1
        for (tenant_id, reason), count in sorted(batch.items()):
            record = RefusalCounterV1(
                api_id=self.api_id, tenant_id=tenant_id, reason_code=reason, count=count,
                window_start_ms=self.window_start_ms, window_end_ms=end_ms,
            )
            try:
                await with_deadline(
                    TimeoutCategory.NATS_PUBLISH,
                    self.js.publish(
                        f"exo.events.refusals.{tenant_id}",
                        record.canonical(),
                        headers={"Nats-Msg-Id": f"{self.api_id}:{self.flush_seq}:{tenant_id}:{reason.value}"},
                    ),
                )
            except Exception:  # keep the count: it goes out with the next flush
                self.refusals[(tenant_id, reason)] = self.refusals.get((tenant_id, reason), 0) + count
        self.window_start_ms = end_ms

    async def refresh_pending(self) -> None:
        info = await with_deadline(
            TimeoutCategory.NATS_SUBSCRIBE,
            self.js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER),
        )
        self.pending_estimate = info.num_pending + info.num_ack_pending
