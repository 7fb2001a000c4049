"""The report a person looks at: one self-contained ``index.html`` per bundle.

Built from the bundle alone (13 and raw/), so ``exoarmur report`` gives an old bundle a report
too: the gate table with every criterion's measured value, threshold and reason, linked to its
evidence and raw files; time-series plots over the whole run with every injected fault shaded;
per-gate evidence; the run's metadata. No script, no network, no CDN: the figures are inline SVG
(matplotlib, text as paths) and the page is a Jinja2 template with its CSS inline, so it opens
offline from disk or a CI artifact.

Where it sits in the bundle's integrity: see ``_check`` (the page's sha256 is in 13 under
``report``, outside the root digest, and ``replay-verify`` checks page and entry).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2

from exoarmur_cli.evidence import BundleError, read_final, record_report
from exoarmur_cli.gates import fmt_number
from exoarmur_cli.html_report._check import FORMAT, REPORT, report_problems, sha256_file
from exoarmur_cli.html_report._figures import all_plots, timeline_of
from exoarmur_cli.html_report._model import Measured, load_bundle
from exoarmur_cli.html_report._page import evidence_sections, gate_rows, metadata
from exoarmur_cli.html_report._plots import fault_colour

__all__ = ["REPORT", "build_html", "write_report", "report_problems"]


def _exact(value: Any) -> Any:
    """A configured number as it is in force, without a float's '.0' (2000.0 → 2000)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return fmt_number(value) if is_number else value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("exoarmur_cli.html_report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["exact"] = _exact
    return env


def build_html(bundle_path: Path, built_by: str = "exoarmur report", measured: Measured | None = None) -> str:
    """The report of the bundle at ``bundle_path``. Raises BundleError if it is not a bundle.
    ``measured``: its raw/ as read and measured already (see ``load_bundle``)."""
    bundle = load_bundle(Path(bundle_path), measured)
    timeline = timeline_of(bundle)
    kinds = list(dict.fromkeys(f.kind for f in timeline.faults))
    return _environment().get_template("report.html.j2").render(
        report_format=FORMAT, bundle_name=bundle.path.name, built_by=built_by, meta=metadata(bundle),
        integrity=list(bundle.integrity), problems=list(bundle.problems), gates=gate_rows(bundle),
        plots=all_plots(bundle, timeline), sections=evidence_sections(bundle),
        fault_kinds=[(k, fault_colour(k)) for k in kinds])


def write_report(bundle_path: Path, built_by: str = "exoarmur report", measured: Measured | None = None) -> dict[str, Any]:
    """Build index.html, write it, and record its sha256 in 13 under ``report`` (the root
    digest and every evidence digest are left exactly as they are). Returns that entry."""
    bundle_path = Path(bundle_path)
    html = build_html(bundle_path, built_by, measured)
    target = bundle_path / REPORT
    tmp = target.with_name(f".{REPORT}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    entry = {"file": REPORT, "format": FORMAT, "sha256": sha256_file(target),
             "root_digest": read_final(bundle_path).get("root_digest"), "built_by": built_by,
             "built_at_wall_ms": int(time.time() * 1000)}
    record_report(bundle_path, entry)
    return entry


def write_report_quietly(bundle_path: Path, built_by: str, *, interruptible: bool = True,
                         measured: Measured | None = None) -> dict[str, Any]:
    """``write_report`` for the end of a run: a report that cannot be built never changes the
    run's outcome; 13 then records why (and replay-verify fails on the missing report). With
    ``interruptible=False`` (an already interrupted run) a second Ctrl-C is recorded the same way."""
    caught = (Exception,) if interruptible else (Exception, KeyboardInterrupt)
    try:
        return write_report(bundle_path, built_by, measured)
    except caught as exc:  # recorded in 13 and shown by replay-verify, never swallowed silently
        entry = {"file": REPORT, "error": f"{type(exc).__name__}: {exc}"}
        try:
            record_report(bundle_path, entry)
        except (BundleError, OSError):
            pass
        return entry
