"""The wheel, as a user installs it: built from this checkout, installed into a fresh venv (its
dependencies from the package index pip uses here, held to requirements.lock), and run from a
folder that is not the checkout. Without the gate and scenario files as package data this fails
with "gates directory not found". Slow (1–2 min): builds, installs, runs gate 4."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT_S = 900.0
RUN_TIMEOUT_S = 180.0


def timed(argv: list, cwd: Path, timeout_s: float, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL, env=env)
    took = time.monotonic() - began
    assert done.returncode in (0, 1, 2, 3), done.stdout[-3000:] + done.stderr[-3000:]
    return done, took


def test_the_wheel_installs_into_a_fresh_venv_and_runs_gate_4_from_any_folder(tmp_path: Path) -> None:
    dist, venv, elsewhere, out = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere", tmp_path / "out"
    elsewhere.mkdir()
    built, build_s = timed([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, REPO], tmp_path,
                           INSTALL_TIMEOUT_S)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = dist.glob("exoarmur-*.whl")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    installed, install_s = timed([venv / "bin" / "pip", "install", "-q", "--disable-pip-version-check", wheel,
                                  "-c", REPO / "requirements.lock"], tmp_path, INSTALL_TIMEOUT_S)
    assert installed.returncode == 0, installed.stderr[-3000:]

    exoarmur = venv / "bin" / "exoarmur"
    version = subprocess.run([exoarmur, "--version"], capture_output=True, text=True, timeout=60, cwd=elsewhere)
    assert version.returncode == 0 and version.stdout.startswith("exoarmur "), version.stderr
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
           "TMPDIR": str(tmpdir), "COLUMNS": "200"}
    ran, run_s = timed([exoarmur, "run-gates", "--no-measure-capacity",
                       "--gate", "4", "--profile", "quick", "--out", out], elsewhere,
                       RUN_TIMEOUT_S, env)
    print(f"\nwheel build {build_s:.1f}s · install into a fresh venv {install_s:.1f}s · run-gates --gate 4 {run_s:.1f}s")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    pass_fail = (out / "reality_run_001" / "PASS_FAIL.txt").read_text()
    assert "FINAL: GREEN" in pass_fail.splitlines(), pass_fail
    # the files judged are the packaged copies, not the checkout's
    where = subprocess.run([venv / "bin" / "python", "-c", "from exoarmur_cli.definitions import definitions_dir as d; "
                            "print(d('gates')); print(d('scenarios'))"], capture_output=True, text=True, timeout=60,
                           cwd=elsewhere, check=True).stdout.split()
    assert all(Path(w).is_relative_to(venv) and "_definitions" in w for w in where), where
    kept = sorted(p.name for p in (out / "reality_run_001" / "raw" / "gates").iterdir())
    assert kept == sorted(p.name for p in (REPO / "gates").glob("*.toml"))
