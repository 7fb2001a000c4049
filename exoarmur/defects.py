"""Deliberately injectable defects: realistic bugs, off unless a stack config names them.

They exist to prove that every gate can go red: the harness runs a scenario against a stack
carrying one of these and requires the threatened gate to fail. The stack's code takes the
defective path itself; no scenario, checker or criterion knows which defect is injected.
"""

from __future__ import annotations

from enum import Enum


class Defect(str, Enum):
    NO_IDEMPOTENCY = "no-idempotency"
    FRESH_EFFECTOR_KEY = "fresh-effector-key"
    NO_TIMEOUT = "no-timeout"
    UNBOUNDED_RETRY = "unbounded-retry"
    NO_BREAKER = "no-breaker"
    KILLSWITCH_IGNORED = "killswitch-ignored"
    KILLSWITCH_FAIL_OPEN = "killswitch-fail-open"
    APPROVAL_BYPASS = "approval-bypass"
    TENANT_LEAK = "tenant-leak"
    ACK_BEFORE_DURABLE = "ack-before-durable"
    MEMORY_STORAGE = "memory-storage"
    SILENT_DROP = "silent-drop"
    NONDETERMINISTIC_DECISION = "nondeterministic-decision"
    NO_RATE_LIMIT = "no-rate-limit"
    LAZY_FSYNC = "lazy-fsync"
    LEDGER_NO_FSYNC = "ledger-no-fsync"
    SWITCH_CACHE = "switch-cache"
    RETRY_NO_BACKOFF = "retry-no-backoff"
    EFFECT_WRONG_NODE = "effect-wrong-node"
    BATCH_FETCH_WAIT = "batch-fetch-wait"
    NATS_ANONYMOUS = "nats-anonymous"
    NATS_WIDE_ROLE = "nats-wide-role"
    EFFECTOR_NO_AUTH = "effector-no-auth"
    BREAKER_EAGER = "breaker-eager"
    BREAKER_MISCOUNT = "breaker-miscount"
    BREAKER_LONG_WINDOW = "breaker-long-window"
    LATE_APPROVAL_ACCEPTED = "late-approval-accepted"


DESCRIPTIONS: dict[Defect, str] = {
    Defect.NO_IDEMPOTENCY: "api publishes without Nats-Msg-Id; cells execute every delivery under a per-delivery key",
    Defect.FRESH_EFFECTOR_KEY: "cells send a new Idempotency-Key on each effector attempt",
    Defect.NO_TIMEOUT: "cells call the effector with no deadline at all",
    Defect.UNBOUNDED_RETRY: "cells retry effector errors forever",
    Defect.NO_BREAKER: "the effector breaker never opens",
    Defect.KILLSWITCH_IGNORED: "cells never read the kill switches",
    Defect.KILLSWITCH_FAIL_OPEN: "an unreadable safety state is taken as 'no switch engaged'",
    Defect.APPROVAL_BYPASS: "any approval record, even DENIED, authorises",
    Defect.TENANT_LEAK: "the audit listing ignores the caller's tenant",
    Defect.ACK_BEFORE_DURABLE: "cells ack an intent before its outcome is durable",
    Defect.MEMORY_STORAGE: "streams use memory storage",
    Defect.SILENT_DROP: "a full queue answers 202 and drops the intent",
    Defect.NONDETERMINISTIC_DECISION: "the decision reads the wall clock instead of its recorded input",
    Defect.NO_RATE_LIMIT: "token buckets disabled",
    Defect.LAZY_FSYNC: "JetStream fsyncs on its default interval (2 minutes), not before each ack",
    Defect.LEDGER_NO_FSYNC: "the effector's SQLite ledger runs with synchronous=OFF: a commit is acked before it is on disk",
    Defect.SWITCH_CACHE: "cells cache each kill-switch value they read for 2 s (an 'optimisation'): a switch engaged "
                         "meanwhile is not seen",
    Defect.RETRY_NO_BACKOFF: "cells retry a failed effector call at once, with no backoff sleep between attempts",
    Defect.EFFECT_WRONG_NODE: "cells send the effect for the tenant's first node instead of the intent's node",
    Defect.BATCH_FETCH_WAIT: "cells linger up to 8 s for a full batch of intents before handling the first one",
    Defect.NATS_ANONYMOUS: "nats-server accepts connections without credentials, with every permission",
    Defect.NATS_WIDE_ROLE: "the cells' NATS user may publish and subscribe to anything ('>')",
    Defect.EFFECTOR_NO_AUTH: "the effector serves every caller, with or without a credential",
    Defect.BREAKER_EAGER: "the cells build their effector breaker with numbers of their own (2 calls, a 0.3 failed "
                          "share) instead of the policy table's",
    Defect.BREAKER_MISCOUNT: "the effector breaker's window counts every other success as a failure",
    Defect.BREAKER_LONG_WINDOW: "the cells build their effector breaker with a 60 s window while the policy table "
                                "says 5 s: it weighs failures against calls a minute old",
    Defect.LATE_APPROVAL_ACCEPTED: "cells take an approval granted after its intent's approval wait ran out, if no "
                                   "cell has recorded the intent expired yet",
}


def parse(names: list[str]) -> list[Defect]:
    """Defects named in a config; an unknown name is a ValueError naming the known ones."""
    known = {d.value: d for d in Defect}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown defect {unknown[0]!r}; known: {', '.join(known)}")
    return [known[n] for n in names]
