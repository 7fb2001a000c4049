"""The capacity a run sizes its admission from, measured on this machine when no bench file is given.

``run-gates --measure-capacity`` (the default on an embedded stack) measures what ``bench``'s
(b) and (f) measure, the closed-loop rate and then the open-loop rates held within
``sizing.SIZING.held_p99_ms``, on a stack of the run's own shape (its fault proxies included, which a
bench stack has not), started for this alone and gone before the run's stack starts. The result is
written in ``bench --save``'s format under the user's cache directory and reused by later runs of
the same shape on the same machine for ``MAX_AGE_H`` hours; ``--capacity-from FILE`` takes any
such file instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil

from exoarmur import __version__, natsio, sizing
from exoarmur.stackconfig import DEFAULT_CELLS
from exoarmur_cli import bench_cpu
from exoarmur_cli.bench import CLIENT, Figures, Pipeline, figures_json, measure_closed_loop
from exoarmur_cli.bench_drive import TerminalWatch, admission_ladder, audit_subject, intent_bodies

MAX_AGE_H = 24.0  # a measurement older than this is taken again: the machine's neighbours change
WARM_UP_INTENTS = 300  # connections and caches, as the bench warms up before (b)
CLOSED_LOOP_INTENTS = 1500  # (b) only sets the ladder's rungs here: a shorter window than the bench's


def cache_dir() -> Path:
    """Where measurements are kept: ``$EXOARMUR_CACHE_DIR``, else ``exoarmur/`` in the user's cache
    directory (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    if explicit := os.environ.get("EXOARMUR_CACHE_DIR"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "exoarmur"


def shape(nats_cluster: int, cells: int = DEFAULT_CELLS, scale: int = 1) -> dict:
    """What a measurement is valid for: this machine, this stack shape (servers, cells, and the
    tenants, nodes and peers ``scale`` multiplies), this version, this bound."""
    return {"cpu_model": bench_cpu.cpu_model(), "cores": bench_cpu.cores(), "nats_cluster": nats_cluster,
            "cells": cells, "scale": scale, "exoarmur": __version__, "held_p99_ms": sizing.SIZING.held_p99_ms}


def cache_file(nats_cluster: int, cells: int = DEFAULT_CELLS, scale: int = 1) -> Path:
    digest = hashlib.sha256(orjson.dumps(shape(nats_cluster, cells, scale),
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return cache_dir() / f"capacity-n{nats_cluster}-{digest}.json"


def fresh_measurement(path: Path, now_s: float, max_age_h: float = MAX_AGE_H) -> bool:
    """A kept measurement is reused while it is younger than ``max_age_h`` and names a held rate."""
    try:
        document = orjson.loads(path.read_bytes())
        measured_at = float(document["probe"]["measured_at_s"])
        sizing.held_from_bench(document)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return False
    return 0 <= now_s - measured_at < max_age_h * 3600


def measured_capacity_file(nats_cluster: int, progress: Callable[[str], None], *, cells: int = DEFAULT_CELLS,
                           scale: int = 1) -> Path:
    """The file of this machine's measured capacity for the shape: kept, or measured now."""
    path = cache_file(nats_cluster, cells, scale)
    if fresh_measurement(path, time.time()):
        progress(f"admission sized from this machine's capacity measured earlier ({path})")
        return path
    progress(f"measuring this machine's capacity on a stack of the run's shape (under a minute; kept in {path})")
    began = time.monotonic()
    figures = asyncio.run(_measure(nats_cluster, cells, scale, progress))
    took_s = time.monotonic() - began
    progress(f"measured in {took_s:.0f} s: held {figures.held_per_s() or 0:,.1f}/s within p99 "
             f"{sizing.SIZING.held_p99_ms:.0f} ms")
    document = figures_json(figures)
    document["probe"] = {"measured_at_s": time.time(), "took_s": round(took_s, 1),
                         "shape": shape(nats_cluster, cells, scale), "closed_loop_intents": CLOSED_LOOP_INTENTS}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    partial.replace(path)  # never a half-written measurement for the next run to trust
    return path


async def _measure(nats_cluster: int, cells: int, scale: int, progress: Callable[[str], None]) -> Figures:
    from exoarmur_cli.stacks import EmbeddedStack

    # The stack's default admission (stackconfig): the ladder's rates must not be refused at the door.
    stack = EmbeddedStack(seed=0, overrides={}, defects=[], nats_cluster=nats_cluster, cells=cells, scale=scale)
    figures = Figures(nats_servers=nats_cluster)
    try:
        await stack.up(progress)
        nc = await natsio.connect_as(stack.config, "harness", "exoarmur-capacity-probe", stack.nats_url)
        try:
            watch = TerminalWatch()
            await watch.start(nc)
            bodies = intent_bodies(stack.config)
            pipeline = Pipeline(stack.api_url, audit_subject, {CLIENT: psutil.Process()})
            await measure_closed_loop(pipeline, watch, bodies, WARM_UP_INTENTS)
            closed = await measure_closed_loop(pipeline, watch, bodies, CLOSED_LOOP_INTENTS)
            figures.intents_per_s = closed.intents_per_s
            figures.admission_ladder = await admission_ladder(stack.config, watch, bodies, closed.intents_per_s)
        finally:
            await nc.close()
    finally:
        await stack.down()
        stack.discard()
    return figures
