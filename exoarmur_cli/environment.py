"""The machine a run ran on, recorded in every run's bundle as ``raw/environment.json``.

Speed differs between machines by 2x and more (DESIGN.md), and a red gate may come from a library
version: a reviewer of a bundle needs every installed distribution with its version (what
``pip freeze`` would list), the Python, the OS and the CPUs the run had.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import psutil

ENVIRONMENT = "environment.json"  # under raw/


def distributions() -> list[dict[str, str]]:
    """Every installed distribution, sorted by name (case-insensitively), each once."""
    found: dict[str, dict[str, str]] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name and name.lower() not in found:
            found[name.lower()] = {"name": name, "version": dist.version}
    return [found[key] for key in sorted(found)]


def record() -> dict[str, Any]:
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "os": {"system": platform.system(), "release": platform.release(), "version": platform.version(),
               "machine": platform.machine(), "platform": platform.platform()},
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "memory_total_mb": round(psutil.virtual_memory().total / 2**20),
        "distributions": distributions(),
    }
