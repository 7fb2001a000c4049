"""The evidence files' primitives, below both the bundle writer and the report: names,
digests, the final document, atomic writes. Nothing here knows how a run or a page is made."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from exoarmur_cli.errors import EvidenceError

FORMAT = "exoarmur-bundle/1"
FINAL = "13_final_evidence_bundle.json"
PASS_FAIL = "PASS_FAIL.txt"
REPORT = "index.html"  # the HTML view of the evidence: see record_report
RAW = "raw"

# Written only by finalize/mark_incomplete, and not hashed (they carry the digests).
_VERDICT_FILES = frozenset({FINAL, PASS_FAIL})
# Not under the root digest either: the report is re-buildable from the evidence, and rebuilding
# it must not change the digest PASS_FAIL.txt (and CI logs) quote. 13 records its own sha256
# under "report" and replay-verify checks it (exoarmur_cli/html_report/_check.py).
_UNHASHED = _VERDICT_FILES | {REPORT, f".{REPORT}.tmp"}
_RUN_DIR = re.compile(r"^reality_run_(\d{3,})$")
_MAX_CREATE_TRIES = 1000
_IN_PROGRESS = "INCOMPLETE: run in progress\nFINAL: INCOMPLETE\n"


class BundleError(EvidenceError):
    """A path is not a (finished) evidence bundle, or a write would break the bundle's layout."""


def _dump(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write-then-rename: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _run_number(path: Path) -> int | None:
    match = _RUN_DIR.match(path.name)
    return int(match[1]) if match and path.is_dir() else None


def latest_bundle(out_dir: Path) -> Path | None:
    """The highest-numbered ``reality_run_NNN`` in ``out_dir``, or None if there is none."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    numbered = [(n, p) for p in out_dir.iterdir() if (n := _run_number(p)) is not None]
    return max(numbered)[1] if numbered else None


def file_digests(bundle_path: Path) -> dict[str, str]:
    """sha256 of every file under the bundle (relative posix paths, raw/ recursively),
    except the two verdict files, which carry these digests, and the report (see REPORT)."""
    bundle_path = Path(bundle_path)
    digests: dict[str, str] = {}
    for path in sorted(bundle_path.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(bundle_path).as_posix()
        if relative in _UNHASHED:
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digests[relative] = digest.hexdigest()
    return digests


def root_digest(digests: Mapping[str, str]) -> str:
    """One digest over all files: sha256 of sorted ``"{sha256}  {path}\\n"`` (sha256sum lines)."""
    lines = sorted(f"{sha}  {path}\n" for path, sha in digests.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def read_final(bundle_path: Path) -> dict[str, Any]:
    """The bundle's ``13_final_evidence_bundle.json``; BundleError says why a path isn't one."""
    bundle_path = Path(bundle_path)
    if not bundle_path.is_dir():
        raise BundleError(f"{bundle_path}: not a directory, so not an evidence bundle")
    final_path = bundle_path / FINAL
    if not final_path.is_file():
        raise BundleError(
            f"{bundle_path}: no {FINAL} — not a bundle, or its run never finished "
            "(see its PASS_FAIL.txt)"
        )
    try:
        final = orjson.loads(final_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"{final_path}: not valid JSON: {exc}") from exc
    if not isinstance(final, dict) or final.get("format") != FORMAT:
        raise BundleError(f"{final_path}: not an {FORMAT} document")
    return final


def record_report(bundle_path: Path, entry: Mapping[str, Any]) -> None:
    """Record the report's entry (its sha256, or why it could not be built) in 13 under
    ``report``; nothing else in 13 changes, so the root digest stays the run's."""
    final = read_final(bundle_path)
    final["report"] = dict(entry)
    _atomic_write(Path(bundle_path) / FINAL, _dump(final))


def verify_digests(bundle_path: Path, final: Mapping[str, Any]) -> list[str]:
    """Every way the files on disk differ from the digests ``final`` recorded; [] if none."""
    recorded = dict(final.get("files", {}))
    actual = file_digests(bundle_path)
    problems = [f"missing: {p}" for p in sorted(set(recorded) - set(actual))]
    problems += [f"not recorded: {p}" for p in sorted(set(actual) - set(recorded))]
    problems += [
        f"changed: {p}" for p in sorted(set(recorded) & set(actual)) if recorded[p] != actual[p]
    ]
    if root_digest(recorded) != final.get("root_digest"):
        problems.append("root digest does not match the recorded file digests")
    return problems


