"""raw/environment.json: every installed distribution with its version, python, OS and CPUs."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from exoarmur_cli.environment import record


def test_the_record_names_every_distribution_with_its_version() -> None:
    found = record()
    names = [d["name"].lower() for d in found["distributions"]]
    assert names == sorted(names) and len(names) == len(set(names))
    versions = {d["name"].lower(): d["version"] for d in found["distributions"]}
    for name in ("exoarmur", "orjson", "nats-py", "matplotlib", "jinja2"):
        assert versions[name] == importlib.metadata.version(name)
    assert found["python"]["version"] == platform.python_version()
    assert found["os"]["system"] == platform.system() and found["cpu_count"] == os.cpu_count()
    assert 1 <= found["cpus_usable"] <= found["cpu_count"] and found["memory_total_mb"] > 0
