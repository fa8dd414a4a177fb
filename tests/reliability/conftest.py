"""Hypothesis profiles for the reliability suite, and a tally of schedules per invariant.

``MQLAB_HYPOTHESIS_PROFILE=ci`` (the default) runs about 100 schedules per property;
``long`` runs at least 1,000 (see scripts/reliability_long.sh).  With
``MQLAB_RELIABILITY_TALLY=path.json`` every property test adds how many schedules it checked
and how many broke each invariant, so the long run can print its summary table.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

PROFILE_VARIABLE = "MQLAB_HYPOTHESIS_PROFILE"
TALLY_VARIABLE = "MQLAB_RELIABILITY_TALLY"

# Each schedule is a whole simulated flash sale (tens of ms), so no per-example deadline;
# too_slow would otherwise complain about data generation that is cheap next to the run.
_COMMON: dict[str, Any] = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow],
                           "print_blob": True}
settings.register_profile("ci", max_examples=100, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)

_profile = os.environ.get(PROFILE_VARIABLE, "ci").strip() or "ci"
if _profile not in ("ci", "long"):
    raise pytest.UsageError(f"{PROFILE_VARIABLE}: got {_profile!r}; allowed: ci, long")
settings.load_profile(_profile)


class Tally:
    """Schedules checked and violations seen, per invariant (written at session end)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"invariant": "", "expect": "", "schedules": 0, "violations": 0})

    def add(self, invariant: str, expect: str, violated: bool) -> None:
        # one row per (invariant, expectation): a design that keeps it and one built to break it
        row = self.rows[f"{invariant}|{expect}"]
        row["invariant"], row["expect"] = invariant, expect
        row["schedules"] += 1
        row["violations"] += int(violated)


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(TALLY_VARIABLE)
    if not path or not _TALLY.rows:
        return
    target = Path(path)
    previous: dict[str, Any] = {}
    if target.exists():  # several pytest runs (one per file) add up into one table
        previous = json.loads(target.read_text())
    for name, row in _TALLY.rows.items():
        old = previous.setdefault(name, {"schedules": 0, "violations": 0})
        old["invariant"], old["expect"] = row["invariant"], row["expect"]
        old["schedules"] += row["schedules"]
        old["violations"] += row["violations"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(previous, indent=1, sort_keys=True))
