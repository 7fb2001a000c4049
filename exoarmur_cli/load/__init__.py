"""The load driver: Locust in a subprocess (``locustfile.py``), started by ``runner.run_load``.

Only ``runner`` is imported by the harness; ``locustfile`` is run by ``python -m locust`` and
never imported here (importing locust would monkey-patch this process with gevent).
"""

from exoarmur_cli.load.runner import LoadLayout, LoadPhase, LoadResult, run_load

__all__ = ["LoadLayout", "LoadPhase", "LoadResult", "run_load"]
