"""Draw the page's figures on every CPU: matplotlib spends ~0.5 s of CPU per figure laying out
text, and the page has eight, so one process made the report the longest wait at the end of a run
that observes nothing.

The figures are drawn in forked workers (they inherit the loaded bundle; nothing is pickled
but the finished ``Plot``), which ignore Ctrl-C (the run handles it) and are reaped before this
returns. Where a pool cannot be had (one CPU, no fork, a worker that died), the figures are drawn
here, one after another: the same bytes, only slower.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from exoarmur_cli.html_report._plots import Plot

_JOBS: Sequence[Callable[[], Plot]] = ()  # set before the fork: the workers inherit it


def _draw(index: int) -> Plot:
    return _JOBS[index]()


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def draw_all(jobs: Sequence[Callable[[], Plot]], workers: int | None = None) -> list[Plot]:
    """Every job's ``Plot``, in the order given."""
    global _JOBS
    workers = min(len(jobs), workers if workers is not None else (os.cpu_count() or 1))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [job() for job in jobs]
    _JOBS = jobs
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_ignore_interrupt) as pool:
            return list(pool.map(_draw, range(len(jobs))))
    except (BrokenProcessPool, OSError):
        return [job() for job in jobs]
    finally:
        _JOBS = ()
