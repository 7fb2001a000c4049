"""A fix for Locust's shutdown, installed by the locustfile (so only inside Locust's own process:
importing locust monkey-patches the process with gevent, so the harness never imports this module).

Locust's shutdown closes its CSV files (locust PR 3486) while the greenlet writing them is still
alive; if that greenlet wakes before the process exits, it writes to a closed file and logs a
ValueError traceback (seen once in CI, in the master's log). Ending the writer first keeps the
files as its last round left them, as they were before that change.
"""

from __future__ import annotations

import gevent
from locust.stats import StatsCSVFileWriter

_write_forever, _close_files = StatsCSVFileWriter.stats_writer, StatsCSVFileWriter.close_files


def _stats_writer(self: StatsCSVFileWriter) -> None:
    self.exoarmur_writer = gevent.getcurrent()
    _write_forever(self)


def _close_files_after_writer(self: StatsCSVFileWriter) -> None:
    writer = getattr(self, "exoarmur_writer", None)
    if writer is not None:
        writer.kill(block=True)  # it yields only in its sleep, so it never ends mid-row
    _close_files(self)


def install() -> None:
    StatsCSVFileWriter.stats_writer = _stats_writer
    StatsCSVFileWriter.close_files = _close_files_after_writer
