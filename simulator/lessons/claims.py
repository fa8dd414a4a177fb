"""The closing cell's check: every claim the lesson table lists for a lesson, asserted."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from simulator.lessons.table import Lesson

Check = Callable[[Mapping[str, Any]], bool]


class ClaimFailed(AssertionError):
    pass


def assert_claims(les: Lesson, checks: Mapping[str, Check], numbers: Mapping[str, Any]) -> None:
    """Evaluate each of ``les``'s claims on ``numbers``; print one line each; raise if any fails."""
    missing = [c.key for c in les.claims if c.key not in checks]
    if missing:
        raise ClaimFailed(f"lesson {les.number} has no check for claim(s) {missing}")
    failed = []
    for claim in les.claims:
        ok = bool(checks[claim.key](numbers))
        print(f"{'PASS' if ok else 'FAIL'}  [{', '.join(claim.rows)}] {claim.text}")
        if not ok:
            failed.append(claim.key)
    if failed:
        raise ClaimFailed(f"lesson {les.number}: claim(s) {failed} do not hold for these numbers")
