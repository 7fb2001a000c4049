"""``exoarmur replay-verify``: a cold reviewer, holding only a bundle directory, checks it.

Each check reads the bundle and returns a frozen ``Check`` (valid, counts, every difference):

1. integrity  — every file's sha256 and the root digest equal what ``13`` recorded; PASS_FAIL.txt
                carries 13's root digest and says exactly what 13's gates say; every audit
                record's own seal (sha256 of its canonical JSON) holds.
2. decisions  — every recorded decision re-derived from the recorded intent and snapshot with
                ``replay_decisions`` (the one implementation gate 3 uses).
3. verdicts   — every gate recorded in 13 re-judged from raw/ with the gate files embedded in
                the bundle, through ``judging.judge`` (the one judging path a run uses).
   report     — index.html has the sha256 13 records under ``report`` (outside the root digest: the
                page is a view rebuilt by ``exoarmur report``) and shows 13's root digest, status,
                verdicts and measured values.
4. live       — optional: the recorded intents re-submitted, in record order and with the
                recorded safety state (kill switches, approvals), to a fresh embedded stack;
                outcome and reason code must match intent by intent. Only decision-determined
                paths are replayed live; the rest are counted as skipped, with why.

A path that is not a bundle raises ``BundleError``; a live stack that cannot start raises
``StackError``. Anything else the bundle holds that cannot be read is a failed check, never a
crash and never a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from exoarmur_cli.bundle import BundleError, latest_bundle, read_final
from exoarmur_cli.verify.checks import AUDIT_PATH, INTENTS_PATH, Check, Report, read_rows
from exoarmur_cli.verify.decisions import check_decisions
from exoarmur_cli.verify.integrity import check_integrity, expected_pass_fail
from exoarmur_cli.verify.report import check_report
from exoarmur_cli.verify.verdicts import check_verdicts, embedded_gates, same_value

__all__ = ["Check", "Report", "check_decisions", "check_integrity", "check_report", "check_verdicts", "embedded_gates",
           "expected_pass_fail", "read_rows", "resolve", "same_value", "verify"]

LIVE_LIMIT = 200


def resolve(bundle: str | Path, out_dir: Path) -> Path:
    """``latest`` is the highest-numbered ``reality_run_NNN`` under ``out_dir``; else the path."""
    if str(bundle) == "latest":
        found = latest_bundle(out_dir)
        if found is None:
            raise BundleError(f"{out_dir}: no reality_run_NNN bundle to verify")
        return found
    return Path(bundle)


def verify(bundle: Path, *, live: bool = False, live_limit: int = LIVE_LIMIT,
           progress: Callable[[str], None] = lambda _line: None) -> Report:
    """Run every check on ``bundle``. Raises BundleError if it is not one (nothing to check)."""
    bundle = Path(bundle)
    final = read_final(bundle)
    audit_rows, audit_unreadable = read_rows(bundle / AUDIT_PATH)
    intent_rows, intents_unreadable = read_rows(bundle / INTENTS_PATH)
    checks = [
        check_integrity(bundle, final, audit_rows, audit_unreadable),
        check_decisions(audit_rows, intent_rows, intents_unreadable),
        check_verdicts(bundle, final),
        check_report(bundle, final),
    ]
    if live:
        from exoarmur_cli.verify.live import check_live

        checks.append(check_live(bundle, audit_rows, intent_rows, live_limit, progress))
    return Report(bundle, str(final.get("status")), str(final.get("root_digest")), tuple(checks))

