"""The figures drawn in forked workers come back whole and in order; a failing figure is the
page's note, not a crash; with one worker they are drawn in this process."""

from __future__ import annotations

import os

from exoarmur_cli.html_report._figures import guarded
from exoarmur_cli.html_report._parallel import draw_all
from exoarmur_cli.html_report._plots import Plot


def _job(n: int):
    return lambda: Plot(f"plot-{n}", f"title {n}", "", (), svg=f"<svg>{n} drawn by {os.getpid()}</svg>")


def test_parallel_figures_come_back_in_order_from_other_processes():
    plots = draw_all([_job(n) for n in range(6)], workers=2)
    assert [p.id for p in plots] == [f"plot-{n}" for n in range(6)]
    assert all(f"drawn by {os.getpid()}<" not in p.svg for p in plots)  # not this process


def test_one_worker_draws_here():
    plots = draw_all([_job(n) for n in range(3)], workers=1)
    assert [p.svg for p in plots] == [f"<svg>{n} drawn by {os.getpid()}</svg>" for n in range(3)]


def test_a_figure_that_raises_in_a_worker_is_a_note_on_the_page():
    def broken():
        raise ValueError("no such column")
    plots = draw_all([_job(0), lambda: guarded("plot-broken", broken)], workers=2)
    assert plots[0].svg and plots[1].svg is None
    assert "ValueError: no such column" in plots[1].missing
