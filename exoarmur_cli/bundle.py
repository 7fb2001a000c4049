"""The numbered, tamper-evident evidence bundle, written as the run goes.

Why incremental: the bundle is created with ``PASS_FAIL.txt`` already saying INCOMPLETE, and
every file lands (atomically) as soon as it exists, so a crash leaves evidence and never a
green-looking bundle. Why digests: ``13_final_evidence_bundle.json`` holds the sha256 of
every other file and a root digest over them, so ``replay-verify`` can tell that the raw data
it re-judges is the data the run judged.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exoarmur.contracts import ReasonCode
from exoarmur.errors import ExoError
from exoarmur_cli.gates import GateResult, Verdict, fmt_number, result_to_json
from exoarmur_cli.gates import overall as overall_of

FORMAT = "exoarmur-bundle/1"
FINAL = "13_final_evidence_bundle.json"
PASS_FAIL = "PASS_FAIL.txt"
REPORT = "index.html"  # the HTML view of the evidence: see record_report
RAW = "raw"
FILES: tuple[str, ...] = (
    "00_reliability_surface.md",
    "01_timeout_design.md",
    "02_timeout_test_outputs.txt",
    "03_retry_design.md",
    "04_retry_test_outputs.txt",
    "05_backpressure_design.md",
    "06_backpressure_test_outputs.txt",
    "07_circuit_breaker_design.md",
    "08_circuit_breaker_test_outputs.txt",
    "09_load_test_results.json",
    "10_load_test_results.md",
    "11_chaos_test_results.json",
    "12_chaos_test_results.md",
    FINAL,
    PASS_FAIL,
)
# Written only by finalize/mark_incomplete, and not hashed (they carry the digests).
_VERDICT_FILES = frozenset({FINAL, PASS_FAIL})
# Not under the root digest either: the report is re-buildable from the evidence, and rebuilding
# it must not change the digest PASS_FAIL.txt (and CI logs) quote. 13 records its own sha256
# under "report" and replay-verify checks it (exoarmur_cli/html_report/_check.py).
_UNHASHED = _VERDICT_FILES | {REPORT, f".{REPORT}.tmp"}
_RUN_DIR = re.compile(r"^reality_run_(\d{3,})$")
_MAX_CREATE_TRIES = 1000
_IN_PROGRESS = "INCOMPLETE: run in progress\nFINAL: INCOMPLETE\n"


class BundleError(ExoError):
    """A path is not a (finished) evidence bundle, or a write would break the bundle's layout."""

    reason_code = ReasonCode.CONFIG_INVALID


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


def _write_report(bundle_path: Path, built_by: str, *, interruptible: bool = True) -> None:
    from exoarmur_cli.html_report import write_report_quietly  # heavy (matplotlib): only when a bundle ends

    write_report_quietly(bundle_path, built_by, interruptible=interruptible)


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


@dataclass(frozen=True)
class Bundle:
    """A handle on one ``reality_run_NNN`` directory; create it with ``Bundle.create``."""

    path: Path

    @classmethod
    def create(cls, out_dir: Path) -> Bundle:
        """Make the next free ``reality_run_NNN`` (race-safe: mkdir without exist_ok, and on
        a clash take the next number), already marked INCOMPLETE."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_bundle(out_dir)
        number = (_run_number(latest) if latest else 0) + 1
        for _ in range(_MAX_CREATE_TRIES):
            path = out_dir / f"reality_run_{number:03d}"
            try:
                path.mkdir()
            except FileExistsError:
                number += 1
                continue
            bundle = cls(path)
            _atomic_write(path / PASS_FAIL, _IN_PROGRESS.encode())
            bundle.raw_dir.mkdir()
            return bundle
        raise BundleError(f"{out_dir}: no free reality_run_NNN after {_MAX_CREATE_TRIES} tries")

    @property
    def raw_dir(self) -> Path:
        return self.path / RAW

    def _target(self, name: str) -> Path:
        if name in _VERDICT_FILES:
            raise BundleError(f"{name} is written only by finalize() or mark_incomplete()")
        if name in FILES:
            return self.path / name
        parts = Path(name).parts
        if len(parts) >= 2 and parts[0] == RAW and ".." not in parts:
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            return target
        raise BundleError(f"{name!r} is not a bundle file (one of FILES, or under raw/)")

    def write_text(self, name: str, text: str) -> Path:
        target = self._target(name)
        _atomic_write(target, text.encode("utf-8"))
        return target

    def write_json(self, name: str, obj: Any) -> Path:
        target = self._target(name)
        _atomic_write(target, _dump(obj))
        return target

    def mark_incomplete(
        self, reason: str, exit_code: int, run_meta: Mapping[str, Any] | None = None
    ) -> str:
        """The run could not finish: say so in PASS_FAIL.txt and 13, still hashing whatever
        evidence exists. Returns the root digest."""
        digests = file_digests(self.path)
        root = root_digest(digests)
        final = {
            "format": FORMAT,
            "status": Verdict.INCOMPLETE.value,
            "reason": reason,
            "exit_code": exit_code,
            "run": dict(run_meta or {}),
            "defects_injected": [],
            "gates": [],
            "files": digests,
            "root_digest": root,
        }
        _atomic_write(self.path / FINAL, _dump(final))
        text = (
            f"INCOMPLETE: {reason}\nEXIT CODE: {exit_code}\n"
            f"FINAL: {Verdict.INCOMPLETE.value}\nROOT DIGEST: {root}\n"
        )
        _atomic_write(self.path / PASS_FAIL, text.encode())
        _write_report(self.path, "run (INCOMPLETE)", interruptible=False)
        return root

    def finalize(
        self,
        run_meta: Mapping[str, Any],
        gate_results: list[GateResult],
        overall: Verdict,
        defects: list[str],
    ) -> str:
        """Write 13 (every gate, every measured value, every file's digest) and then
        PASS_FAIL.txt. The status is never better than the gate results themselves say.
        Returns the root digest."""
        status = overall_of([Verdict(overall), overall_of(gate_results)])
        digests = file_digests(self.path)
        root = root_digest(digests)
        final = {
            "format": FORMAT,
            "status": status.value,
            "run": dict(run_meta),
            "defects_injected": list(defects),
            "gates": [result_to_json(r) for r in gate_results],
            "files": digests,
            "root_digest": root,
        }
        _atomic_write(self.path / FINAL, _dump(final))
        text = pass_fail_text(gate_results, status, defects, root)
        _atomic_write(self.path / PASS_FAIL, text.encode())
        _write_report(self.path, "run")
        return root


def pass_fail_text(
    results: list[GateResult], status: Verdict, defects: list[str], root: str
) -> str:
    """PASS_FAIL.txt: a line per gate, what failed under each non-green gate, defects, verdict."""
    lines: list[str] = []
    for result in sorted(results, key=lambda r: r.gate_id):
        lines.append(f"G{result.gate_id} {result.name:<32} {result.verdict.value}")
        if result.verdict is Verdict.GREEN:
            continue
        lines += [f"  - scenario not run: {s}" for s in result.scenarios_missing]
        lines += [f"  - {c.expr} (measured {fmt_number(c.value)})" for c in result.failed]
    if defects:
        lines.append(f"DEFECTS INJECTED: {', '.join(defects)}")
        lines.append("NOT A CLEAN RUN")
    lines.append(f"FINAL: {Verdict(status).value}")
    lines.append(f"ROOT DIGEST: {root}")
    return "\n".join(lines) + "\n"
