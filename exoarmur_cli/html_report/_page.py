"""The page's content as plain data for the template: gate table, evidence, metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exoarmur_cli import recorded
from exoarmur_cli.display import fmt_measured
from exoarmur_cli.gates import fmt_number
from exoarmur_cli.html_report import _figures as figures
from exoarmur_cli.html_report._model import CHECKER_PLOTS, CHECKER_SOURCES, LOCUST_HTML, BundleData
from exoarmur_cli.html_report._plots import Plot

KEYS_SHOWN = 10  # the checkers keep the first 10 offending keys as evidence


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "nothing recorded"


@dataclass(frozen=True)
class Section:
    """One gate's evidence: tables, figures, notes and the raw files behind them."""

    id: str
    title: str
    verdict: str
    summary: str
    tables: tuple[Table, ...] = ()
    plots: tuple[Plot, ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (href, text): figures elsewhere on the page
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class CriterionRow:
    id: str
    expr: str
    measured: str
    threshold: str
    passed: bool
    why: str
    note: str
    evidence: str  # an anchor on the page
    plot: str | None
    sources: tuple[str, ...]


@dataclass(frozen=True)
class GateRow:
    id: str
    gate_id: int
    name: str
    verdict: str
    scenarios_missing: tuple[str, ...]
    criteria: tuple[CriterionRow, ...] = field(default=())

    @property
    def passed(self) -> int:
        return sum(1 for c in self.criteria if c.passed)


def gate_rows(bundle: BundleData) -> list[GateRow]:
    rows = []
    for result in sorted(bundle.results, key=lambda r: r.gate_id):
        crit = []
        for n, c in enumerate(result.criteria):
            checker = bundle.metric_checker.get(c.metric)
            crit.append(CriterionRow(
                id=f"crit-G{result.gate_id}-{n}", expr=c.expr, measured=fmt_measured(c.value),
                threshold=f"{c.op} {fmt_number(c.threshold)}", passed=c.passed, why=c.why, note=c.note,
                evidence=f"evidence-G{result.gate_id}", plot=CHECKER_PLOTS.get(checker or ""),
                sources=CHECKER_SOURCES.get(checker or "", ())))
        rows.append(GateRow(f"gate-G{result.gate_id}", result.gate_id, result.name, result.verdict.value,
                            tuple(result.scenarios_missing), tuple(crit)))
    return rows


def _keys(values: Iterable[Any]) -> str:
    shown = [", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in values]
    return "; ".join(shown[:KEYS_SHOWN]) or "—"


def _count_rows(bundle: BundleData, pairs: Iterable[tuple[str, str, str]]) -> tuple[tuple[str, ...], ...]:
    """(what, metric, checker.evidence key) → rows of (what, count, offending keys)."""
    rows = []
    for what, metric, where in pairs:
        checker, _, key = where.partition(".")
        rows.append((what, fmt_measured(bundle.metrics.get(metric)),
                     _keys((bundle.evidence.get(checker) or {}).get(key) or [])))
    return tuple(rows)


def exactly_once_table(bundle: BundleData, scenario: str | None) -> Table:
    pairs = [("accepted but no terminal record (lost)", "acked_without_terminal", "exactly_once.lost"),
             ("more than one terminal record", "multi_terminal_records", "exactly_once.multi_terminal"),
             ("duplicate effects at the effector", "duplicate_effects", "exactly_once.duplicate_effects"),
             ("EXECUTED without an effect", "executed_without_effect", "exactly_once.executed_without_effect"),
             ("effect without an EXECUTED record", "effects_not_recorded_executed",
              "exactly_once.effect_not_executed")]
    if scenario:
        pairs.insert(1, (f"{scenario}: accepted but no terminal record", f"{scenario}_acked_without_terminal",
                         "exactly_once.lost"))
    return Table("Duplicates and losses (whole run), with the offending keys",
                 ("check", "count", "offending keys (first 10)"), _count_rows(bundle, pairs))


def violations_table(bundle: BundleData, title: str, pairs: Iterable[tuple[str, str, str]]) -> Table:
    return Table(title, ("check", "count", "offending keys (first 10)"), _count_rows(bundle, pairs))


G1_VIOLATIONS = (("acked intents lost", "acked_intents_lost", "persistence.lost"),
                 ("intents changed or lost across restarts", "intents_changed_or_lost", "persistence.intents_changed"),
                 ("audit records changed or lost", "audit_records_changed_or_lost", "persistence.audit_changed"))
G5_VIOLATIONS = (("executed while the global switch was engaged", "executions_while_global_engaged",
                  "killswitch.executed_while_engaged"),
                 ("executed while its tenant's switch was engaged", "tenant_switch_leaks", "killswitch.tenant_leaks"),
                 ("executed while the switch state was unreadable", "fail_closed_executions", "killswitch.fail_open"),
                 ("A2/A3 executed without approval", "unapproved_a2a3_executed", "killswitch.unapproved"))
G6_VIOLATIONS = (("cross-tenant reads whose answer held another tenant's data (event index, path)",
                  "cross_tenant_reads_leaked", "read_isolation.leaked_reads"),
                 ("read surfaces of the OpenAPI document never probed", "cross_tenant_read_endpoints_unprobed",
                  "read_isolation.unprobed"),
                 ("effects or EXECUTED records on another tenant's node", "cross_tenant_effects",
                  "tenancy.foreign_effects"))


def _mapping_table(title: str, data: Mapping[str, Any] | None, key: str = "name", value: str = "value") -> Table:
    rows = tuple((str(k), fmt_measured(v) if not isinstance(v, (dict, list)) else str(v))
                 for k, v in (data or {}).items())
    return Table(title, (key, value), rows)


def coverage_table(bundle: BundleData) -> Table:
    rows = []
    for kind in ("nodes", "peers", "tenants"):
        covered, expected = bundle.metrics.get(f"{kind}_covered"), _expected(bundle, kind)
        share = f"{100 * covered / expected:.1f}%" if isinstance(covered, int) and expected else "missing"
        rows.append((kind, fmt_measured(covered), fmt_measured(expected), share))
    return Table("Coverage: executed intents under load", ("kind", "covered", "expected", "share"), tuple(rows))


def _expected(bundle: BundleData, kind: str) -> int | None:
    owners = bundle.data.params.get("node_owners") or {}
    if kind == "nodes":
        return len(owners) or None
    if kind == "tenants":
        return len(set(owners.values())) or None
    return bundle.data.params.get("stack", {}).get("peers")


def replay_table(bundle: BundleData) -> Table:
    found = bundle.evidence.get("decision_replay") or {}
    rows = tuple((str(m.get("intent")), f"{m['recorded']['outcome']}/{m['recorded']['reason_code']}",
                  f"{m['replayed']['outcome']}/{m['replayed']['reason_code']}")
                 for m in found.get("mismatches") or [] if isinstance(m, dict) and "recorded" in m)
    replayed = fmt_measured(bundle.metrics.get("decisions_replayed"))
    return Table("Replay differences", ("intent", "recorded", "replayed"), rows,
                 empty=f"none: {replayed} recorded decisions re-derived identically by decide()")


def chaos_table(bundle: BundleData) -> Table:
    rows = tuple((fmt_measured(None if f.get("t_ms") is None else round(f["t_ms"])), str(f.get("kind")),
                  str(f.get("target", "")),
                  ", ".join(f"{k}={v}" for k, v in sorted(f.items()) if k not in ("t_ms", "kind", "target", "wall_ms")))
                 for f in (bundle.evidence.get("chaos") or {}).get("faults") or [])
    return Table("Chaos faults injected", ("time_ms", "kind", "target", "detail"), rows,
                 empty="no chaos fault was injected")


def refusal_table(bundle: BundleData) -> Table:
    by_reason = (bundle.evidence.get("refusals") or {}).get("by_reason") or {}
    rows = tuple((r, str(v.get("clients_told")), str(v.get("audited"))) for r, v in sorted(by_reason.items()))
    return Table("Refusals: what clients were told vs what the api audited", ("reason", "clients told", "audited"),
                 rows)


def locust_table(bundle: BundleData) -> Table:
    cols = ("Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%")
    rows = tuple(tuple(_locust_cell(row.get(c)) for c in cols) for row in bundle.locust_stats)
    return Table("Locust summary (locust_stats.csv; latencies ms)", cols, rows, empty="no locust_stats.csv")


def _locust_cell(value: str | None) -> str:
    try:
        return fmt_measured(float(value)) if value is not None else "missing"
    except ValueError:
        return value


Blocks = tuple[tuple[Table, ...], tuple[Plot, ...], tuple[tuple[str, str], ...]]


def _metrics_table(bundle: BundleData, title: str, names: Iterable[str]) -> Table:
    return _mapping_table(title, {name: bundle.metrics.get(name) for name in names})


def _g1(b: BundleData) -> Blocks:
    return ((violations_table(b, "Losses and changes, with the offending keys", G1_VIOLATIONS),
             _metrics_table(b, "Content compared across NATS restarts",
                            ("audit_records_compared", "nats_restarts_sigterm", "nats_restarts_sigkill"))),
            (), (("#plot-timeline", "NATS restarts on the timeline"),))


def _g2(b: BundleData) -> Blocks:
    return (exactly_once_table(b, "restart"),), (), (("#plot-timeline", "kills on the timeline"),)


def _g3(b: BundleData) -> Blocks:
    return (replay_table(b),), (), ()


def _g4(b: BundleData) -> Blocks:
    return (_mapping_table("Cold start", (b.evidence.get("cold_start") or {}).get("cold_start")),), (), ()


def _g5(b: BundleData) -> Blocks:
    return ((violations_table(b, "Violations, with the offending keys", G5_VIOLATIONS),),
            (figures.propagation_plot(b),),
            (("#plot-killswitch", "engaged intervals and the decisions around them"),))


def _g6(b: BundleData) -> Blocks:
    return ((_metrics_table(b, "Quiet tenant latency under a noisy neighbour",
                            ("quiet_tenant_p99_ms_baseline", "quiet_tenant_p99_ms_under_noise",
                             "quiet_tenant_latency_ratio", "noisy_tenant_rate_limited", "quiet_tenant_refused")),
             violations_table(b, "Isolation breaches, with the offending keys", G6_VIOLATIONS)),
            (), (("#plot-latency", "latency per scenario"),))


def _g7(b: BundleData) -> Blocks:
    attempts = (b.evidence.get("retries") or {}).get("attempts_histogram")
    return ((exactly_once_table(b, "chaos"), chaos_table(b),
             _mapping_table("Retry attempts per intent (retry scenario)", attempts, "attempts", "intents")),
            (), (("#plot-timeline", "chaos fault timeline"), ("#plot-breaker", "breaker state per cell")))


def _g8(b: BundleData) -> Blocks:
    return ((coverage_table(b), refusal_table(b), locust_table(b)), (),
            (("#plot-pending", "pending depth"), ("#plot-rss", "RSS per process"), ("#plot-locust", "Locust rates"),
             (f"raw/{LOCUST_HTML}", "Locust's own HTML report")))


GATE_EVIDENCE = {1: _g1, 2: _g2, 3: _g3, 4: _g4, 5: _g5, 6: _g6, 7: _g7, 8: _g8}


def evidence_sections(bundle: BundleData) -> list[Section]:
    """G1..G8 evidence, for the gates 13 records."""
    sections = []
    for result in sorted(bundle.results, key=lambda r: r.gate_id):
        build = GATE_EVIDENCE.get(result.gate_id)
        try:
            tables, plots, links = build(bundle) if build else ((), (), ())
        except Exception as exc:  # malformed evidence: said in the section, never a crash
            tables, plots, links = (Table("Evidence could not be read", ("error",),
                                          ((f"{type(exc).__name__}: {exc}",),)),), (), ()
        gate = bundle.gate_files.get(result.gate_id)
        sources = sorted({s for c in result.criteria for s in CHECKER_SOURCES.get(bundle.metric_checker.get(c.metric, ""), ())})
        sections.append(Section(f"evidence-G{result.gate_id}", f"G{result.gate_id} {result.name}",
                                result.verdict.value, gate.summary.strip() if gate else "", tuple(tables),
                                tuple(plots), tuple(links), tuple(sources)))
    return sections


def metadata(bundle: BundleData) -> dict[str, Any]:
    run = bundle.final.get("run") or {}
    stack = run.get("stack") or bundle.data.params.get("stack") or {}
    return {
        "status": bundle.final.get("status"), "reason": bundle.final.get("reason"),
        "seed": run.get("seed"), "profile": run.get("profile"),
        "sync": stack.get("jetstream_sync_interval", "not recorded"),
        "overrides": stack.get("overrides") or bundle.data.params.get("overrides") or {},
        "defects": bundle.final.get("defects_injected") or run.get("defects_injected") or [],
        "versions": run.get("versions") or {}, "durations": run.get("durations_s") or {},
        "stack": {k: v for k, v in stack.items() if k not in ("overrides", "stack_dir")},
        "external": run.get("external_stack"), "scenarios": run.get("scenarios") or [],
        "environment": _environment_line(bundle.environment),
        "root_digest": bundle.final.get("root_digest"), "files": sorted((bundle.final.get("files") or {}).items()),
        "raw_files": [recorded.HISTORY, recorded.LOAD_HISTORY, recorded.AUDIT, recorded.INTENTS, recorded.EVENTS,
                      recorded.LEDGER, recorded.SAMPLES, recorded.RUN_PARAMS],
    }


def _environment_line(env: Mapping[str, Any]) -> str:
    if not env:
        return "not recorded (raw/environment.json is absent: a bundle from before it was recorded)"
    python, system = env.get("python") or {}, env.get("os") or {}
    return (f"Python {python.get('version')} ({python.get('implementation')}) · {system.get('platform')} · "
            f"{env.get('cpus_usable')} of {env.get('cpu_count')} CPUs · {env.get('memory_total_mb')} MB · "
            f"{len(env.get('distributions') or [])} distributions installed")
