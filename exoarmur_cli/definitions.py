"""Where the gate and scenario files are read from: the one place that knows.

The files live at the top of the repository (``gates/``, ``scenarios/``), where reviewers read
them. A built wheel carries copies as package data under ``exoarmur_cli/_definitions/`` (setup.py
copies them at build time), so an installed ``exoarmur`` runs from any folder. The packaged copy
is preferred; a checkout (or an editable install) has none and reads the top-level folders.
A user's own folders (``--gates-dir``, ``--scenarios-dir``) override both.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGED = PACKAGE_DIR / "_definitions"  # what setup.py's build step writes into a wheel
CHECKOUT = PACKAGE_DIR.parent  # the repository root, when running from a checkout
KINDS = ("gates", "scenarios")
PROFILES = ("quick", "full")  # the size tables every scenario file has ([quick], [full])


def definitions_dir(kind: str) -> Path:
    """The folder of ``kind`` ("gates" or "scenarios") files this installation ships."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    packaged = PACKAGED / kind
    return packaged if packaged.is_dir() else CHECKOUT / kind


def gates_dir(override: Path | None = None) -> Path:
    """``override`` when the user gave one, else the shipped gate files."""
    return Path(override) if override is not None else definitions_dir("gates")


def scenarios_dir(override: Path | None = None) -> Path:
    """``override`` when the user gave one, else the shipped scenario files."""
    return Path(override) if override is not None else definitions_dir("scenarios")
