"""Who may call the effector: a bearer token per caller, checked before anything is done.

The cells' token opens ``POST /v1/effects`` and ``GET /v1/effects/{key}``; the harness's opens
``/v1/faults``, ``/v1/ledger`` and ``/v1/stats``. A missing or unknown token is 401
UNAUTHENTICATED, another caller's token 403 FORBIDDEN; either way nothing is applied or changed.
Tokens are compared with ``hmac.compare_digest`` (constant time, a few hundred ns per call).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from exoarmur.contracts import ReasonCode
from exoarmur.defects import Defect
from exoarmur.seams import Alternatives

Refusal = tuple[int, ReasonCode, str]


def bearer(header: str) -> bytes | None:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token.encode() if scheme.lower() == "bearer" and token else None


def require_caller(tokens: Mapping[str, bytes], header: str, caller: str) -> Refusal | None:
    """None when ``header`` carries ``caller``'s token; else why not, as (status, reason, detail)."""
    token = bearer(header)
    if token is None:
        return 401, ReasonCode.UNAUTHENTICATED, "missing bearer token"
    holder = None
    for name, expected in tokens.items():  # every token compared: the time does not say which matched
        if hmac.compare_digest(token, expected):
            holder = name
    if holder is None:
        return 401, ReasonCode.UNAUTHENTICATED, "unknown bearer token"
    if holder != caller:
        return 403, ReasonCode.FORBIDDEN, f"this route takes the {caller} credential"
    return None


def accept_anyone(_tokens: Mapping[str, bytes], _header: str, _caller: str) -> Refusal | None:
    """Defect ``effector-no-auth``: every caller is served, with or without a credential."""
    return None


@dataclass(frozen=True)
class EffectorAuth:
    check: Callable[[Mapping[str, bytes], str, str], Refusal | None] = require_caller


EFFECTOR_AUTH_DEFECTS: Alternatives = {Defect.EFFECTOR_NO_AUTH: {"check": accept_anyone}}
