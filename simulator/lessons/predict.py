"""Predict first: the learner writes a number, the next cell compares it with the run."""

from __future__ import annotations

from typing import Any


def compare(guess: Any, actual: float, *, what: str, close_within: float = 0.25) -> None:
    """Print how ``guess`` compares with ``actual``.

    ``close_within`` is a relative tolerance; a guess of ``None`` just reveals the answer.
    """
    shown = repr(round(actual, 3)) if isinstance(actual, float) else str(actual)
    if guess is None:
        text = f"{what}: you left the guess empty; the simulator says {shown}."
    else:
        try:
            g = float(guess)
        except (TypeError, ValueError):
            text = f"{what}: {guess!r} is not a number; the simulator says {shown}."
        else:
            scale = max(abs(float(actual)), 1.0)
            if abs(g - float(actual)) <= close_within * scale:
                verdict = "close: your model of the system matches the simulation"
            elif g < actual:
                verdict = "too low: the effect is stronger than you expected"
            else:
                verdict = "too high: the effect is weaker than you expected"
            text = f"{what}: you guessed {g:g}, the simulator says {shown} ({verdict})."
    print(text)
