"""Locust's shutdown closes its CSV files while their writer greenlet is alive (locust PR 3486);
``exoarmur_cli.load.locust_shutdown.install()`` (called by the locustfile) ends the writer first.
Run in a child process: importing locust monkey-patches the process with gevent."""

import subprocess
import sys
import textwrap

# The writer's whole life in Locust's shutdown order: it writes a round, sleeps, the files are
# closed, and the process lives on past its next wake-up (as the master does while it exits).
SHUTDOWN = textwrap.dedent("""
    import gevent, sys
    import locust.stats as stats
    if sys.argv[1] == "patched":
        from exoarmur_cli.load import locust_shutdown
        locust_shutdown.install()
    from locust.env import Environment
    stats.CSV_STATS_INTERVAL_SEC = 0.05
    writer = stats.StatsCSVFileWriter(Environment(), [0.5], sys.argv[2], full_history=True)
    failed = []
    gevent.spawn(writer.stats_writer).link_exception(lambda g: failed.append(repr(g.exception)))
    gevent.sleep(0.2)
    writer.close_files()
    gevent.sleep(0.3)
    print("FAILED" if failed else "CLEAN", *failed)
""")


def _shutdown(mode: str, tmp_path) -> str:
    done = subprocess.run([sys.executable, "-c", SHUTDOWN, mode, str(tmp_path / "locust")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_unpatched_the_writer_outlives_its_files(tmp_path) -> None:
    # The race this guards against is real in the Locust we pin (else the patch is dead weight).
    assert _shutdown("bare", tmp_path).startswith("FAILED ValueError")


def test_patched_the_writer_ends_before_its_files_close(tmp_path) -> None:
    assert _shutdown("patched", tmp_path).strip() == "CLEAN"
    assert (tmp_path / "locust_stats.csv").read_text().startswith("Type,Name")
