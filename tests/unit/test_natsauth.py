"""natsauth: the server's authorization block, one user per role, no anonymous access."""

from __future__ import annotations

import json

from exoarmur.defects import Defect
from exoarmur.natsauth import ROLES, authorization_lines, bus_auth, inbox_prefix
from exoarmur.stackconfig import NATS_ROLES

PASSWORDS = {role: f"pw-{role}" for role in NATS_ROLES}


def users(lines: list[str]) -> dict[str, dict]:
    line = next(line for line in lines if line.strip().startswith("users:"))
    return {u["user"]: u for u in json.loads(line.split(":", 1)[1])}


def allowed(user: dict) -> set[str]:
    return set(user["permissions"]["publish"]["allow"])


def test_every_role_is_a_user_with_its_password_and_its_own_inbox() -> None:
    assert set(ROLES) == set(NATS_ROLES)
    lines = authorization_lines(PASSWORDS)
    found = users(lines)
    assert set(found) == set(NATS_ROLES)
    for role, user in found.items():
        assert user["password"] == PASSWORDS[role]
        assert f"{inbox_prefix(role)}.>" in user["permissions"]["subscribe"]["allow"]
        assert ">" not in allowed(user) and "_INBOX.>" not in user["permissions"]["subscribe"]["allow"]
    assert not any("no_auth_user" in line for line in lines)


def test_only_the_api_publishes_intents_and_writes_the_operator_buckets() -> None:
    found = users(authorization_lines(PASSWORDS))
    for role, user in found.items():
        assert ("exo.intents.>" in allowed(user)) is (role == "api")
        assert ("$KV.approvals.>" in allowed(user)) is (role == "api")
        assert ("$KV.safety.>" in allowed(user)) is (role in ("api", "nemesis"))
        assert ("exo.audit.>" in allowed(user)) is (role == "cell")
        assert ("exo.journal.>" in allowed(user)) is (role == "cell")
        assert ("$JS.API.DIRECT.GET.JOURNAL.>" in allowed(user)) is (role == "cell")
        assert ("$JS.ACK.INTENTS.cells.>" in allowed(user)) is (role == "cell")
        assert any(s.startswith("$JS.API.STREAM.CREATE") or s == "$JS.API.>" for s in allowed(user)) is (
            role == "provisioner")
    harness = found["harness"]["permissions"]["publish"]
    assert "$JS.API.CONSUMER.MSG.NEXT.INTENTS.cells" in harness["deny"]


def test_the_defects_open_the_doors_they_name() -> None:
    anonymous = authorization_lines(PASSWORDS, bus_auth({Defect.NATS_ANONYMOUS}))
    assert "no_auth_user: anonymous" in anonymous and ">" in allowed(users(anonymous)["anonymous"])
    wide = users(authorization_lines(PASSWORDS, bus_auth({Defect.NATS_WIDE_ROLE})))
    assert allowed(wide["cell"]) == {">"} and ">" not in allowed(wide["api"])
    assert bus_auth({Defect.NO_BREAKER}) == bus_auth()
