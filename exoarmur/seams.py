"""Where an injected defect enters the stack: a few named seams, chosen once at start-up.

A seam is a small frozen dataclass whose fields are the parts a defect may replace; its defaults
are the production behaviour. Next to each seam, in the module of the thing it breaks, a table
maps each defect to the one named alternative it swaps in (``{Defect.X: {"field": alternative}}``).
``choose`` applies the injected defects' alternatives once, when a process starts; the code
that runs per request or per intent only calls the seam and never asks which defect is on.

The seams: storage (``natsio``), admission, publisher and audit scope (``api``), safety
snapshot and decision, effector caller and delivery (``cell``), bus authorization (``natsauth``)
and effector authentication (``effector``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from exoarmur.defects import Defect, parse

T = TypeVar("T")

Alternatives = Mapping[Defect, Mapping[str, Any]]


def injected(defect_names: Iterable[str]) -> frozenset[Defect]:
    """The defects a stack config names (``StackConfig.defects``); empty on every real stack."""
    return frozenset(parse(list(defect_names)))


def choose(production: T, alternatives: Alternatives, defects: Iterable[Defect]) -> T:
    """``production`` with the parts each injected defect replaces; the defects that do not
    touch this seam change nothing. Several defects on one seam replace different parts."""
    changes: dict[str, Any] = {}
    for defect in sorted(set(defects) & set(alternatives), key=lambda d: d.value):
        changes.update(alternatives[defect])
    return dataclasses.replace(production, **changes) if changes else production
