"""Who may do what on the bus: one NATS user per component, each with only the subjects it needs.

nats-server enforces these (``authorization { users = [...] }`` in its config); there is no
anonymous access. Each role's reply inbox is its own (``_INBOX.<role>.>``, the client's
``inbox_prefix``), so no role can read another's replies. The JetStream API subjects are exact:

- ``provisioner`` creates and updates streams, the cells' consumer and the KV buckets at start-up
  (``python -m exoarmur provision``); it holds the JetStream API and nothing else, save the scratch
  subjects of ``exoarmur bench`` (``bench.>``): its raw publish ceiling, and its bare pipeline,
  which publishes to, pulls from and acks ``BENCH_BARE`` and subscribes to its records.
- ``api`` publishes intents (the only role that may) and its refusal counters, reads intents and
  audit records by direct get, the pending depth of the cells' consumer, and is the operator path:
  the only role that writes the ``safety`` and ``approvals`` buckets.
- ``cell`` pulls from and acks the cells' consumer, publishes terminal records and its decision
  journal (the only role that may either), pending and breaker events, and reads the switches,
  approvals, records and journal by direct get.
- ``harness`` reads: stream and consumer info, direct gets, ephemeral pull consumers for the
  export, the audit subjects. It may not create or pull the cells' consumer, nor write anything.
- ``nemesis`` is the harness's fault injection (corrupting the ``safety`` bucket to show that an
  unreadable state fails closed): ``$KV.safety.>`` and nothing else.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from exoarmur.defects import Defect
from exoarmur.seams import Alternatives, choose

JS = "$JS.API"


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ()
    deny_publish: tuple[str, ...] = ()


def inbox_prefix(role: str) -> str:
    return f"_INBOX.{role}"


ROLES: dict[str, Permissions] = {
    "provisioner": Permissions(publish=(f"{JS}.>", "bench.>", "$JS.ACK.BENCH_BARE.>"), subscribe=("bench.>",)),
    "api": Permissions(publish=(
        "exo.intents.>", "exo.events.refusals.>",
        f"{JS}.STREAM.INFO.INTENTS", f"{JS}.CONSUMER.INFO.INTENTS.cells",
        f"{JS}.DIRECT.GET.AUDIT", f"{JS}.DIRECT.GET.AUDIT.>", f"{JS}.DIRECT.GET.INTENTS.>",
        f"{JS}.STREAM.INFO.KV_safety", f"{JS}.STREAM.INFO.KV_approvals", f"{JS}.DIRECT.GET.KV_safety.>",
        "$KV.safety.>", "$KV.approvals.>",
    )),
    "cell": Permissions(publish=(
        "exo.audit.>", "exo.journal.>", "exo.events.pending.>", "exo.events.breaker.>",
        f"{JS}.CONSUMER.MSG.NEXT.INTENTS.cells", "$JS.ACK.INTENTS.cells.>",
        f"{JS}.DIRECT.GET.AUDIT.>", f"{JS}.DIRECT.GET.JOURNAL.>", f"{JS}.DIRECT.GET.KV_safety.>",
        f"{JS}.DIRECT.GET.KV_approvals.>",
        # the leader's answer, on a cluster (natsio.last_message)
        f"{JS}.STREAM.MSG.GET.KV_safety", f"{JS}.STREAM.MSG.GET.KV_approvals", f"{JS}.STREAM.MSG.GET.JOURNAL",
        f"{JS}.STREAM.MSG.GET.AUDIT",
    )),
    "harness": Permissions(
        publish=(f"{JS}.STREAM.INFO.*", f"{JS}.CONSUMER.INFO.*.*", f"{JS}.CONSUMER.CREATE.*.*",
                 f"{JS}.CONSUMER.CREATE.*.*.>", f"{JS}.CONSUMER.MSG.NEXT.*.*", f"{JS}.DIRECT.GET.>",
                 f"{JS}.STREAM.MSG.GET.*"),
        subscribe=("exo.audit.>",),
        deny_publish=(f"{JS}.CONSUMER.CREATE.INTENTS.cells", f"{JS}.CONSUMER.CREATE.INTENTS.cells.>",
                      f"{JS}.CONSUMER.MSG.NEXT.INTENTS.cells"),
    ),
    "nemesis": Permissions(publish=("$KV.safety.>", f"{JS}.STREAM.INFO.KV_safety")),
}


# --- the bus-auth seam: what the server's authorization block lets through ------------------------

ANONYMOUS_USER = "anonymous"
EVERYTHING = Permissions(publish=(">",), subscribe=(">",))


@dataclass(frozen=True)
class BusAuth:
    anonymous: bool = False  # production: a connection without credentials is refused
    wide_roles: frozenset[str] = field(default_factory=frozenset)  # roles given ``>`` instead of theirs

    def permissions(self, role: str) -> Permissions:
        return EVERYTHING if role in self.wide_roles else ROLES[role]


BUS_AUTH_DEFECTS: Alternatives = {
    # Defect ``nats-anonymous``: connections without credentials are accepted, with every right.
    Defect.NATS_ANONYMOUS: {"anonymous": True},
    # Defect ``nats-wide-role``: the cells' user may publish and subscribe to anything (``>``).
    Defect.NATS_WIDE_ROLE: {"wide_roles": frozenset({"cell"})},
}


def bus_auth(defects: Iterable[Defect] = ()) -> BusAuth:
    return choose(BusAuth(), BUS_AUTH_DEFECTS, defects)


def _user(user: str, password: str, perms: Permissions, role: str) -> dict:
    publish: dict = {"allow": list(perms.publish)}
    if perms.deny_publish:
        publish["deny"] = list(perms.deny_publish)
    subscribe = list(perms.subscribe) + ([f"{inbox_prefix(role)}.>"] if ">" not in perms.subscribe else [])
    return {"user": user, "password": password,
            "permissions": {"publish": publish, "subscribe": {"allow": subscribe}}}


def authorization_lines(passwords: dict[str, str], auth: BusAuth = BusAuth()) -> list[str]:
    """The server config's ``authorization`` block (and ``no_auth_user`` only under its defect).

    Written as JSON values, which the NATS config format accepts, so ``$`` in a subject is never
    read as a variable."""
    users = [_user(role, passwords[role], auth.permissions(role), role) for role in ROLES]
    lines = ["authorization {", f"  users: {json.dumps(users)}", "}"]
    if auth.anonymous:
        users.append(_user(ANONYMOUS_USER, secrets.token_hex(16), EVERYTHING, ANONYMOUS_USER))
        lines = ["authorization {", f"  users: {json.dumps(users)}", "}", f"no_auth_user: {ANONYMOUS_USER}"]
    return lines
