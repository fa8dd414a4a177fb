"""Showing figures and numbers the same way on every run.

Figures are rendered to PNG at a fixed DPI and displayed as images, then closed: the output
does not depend on the matplotlib backend the kernel happens to start with, and no figure
is left behind in pyplot's list.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import matplotlib

DPI = 72
PANEL_DPI = 60


def setup() -> None:
    """Fixed plot settings for a lesson's kernel."""
    matplotlib.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 9,
                                "svg.hashsalt": "mqlab", "axes.titlesize": 10})


def figure_png(fig: Any, dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def show(fig: Any) -> None:
    """Display ``fig`` as a PNG and close it."""
    from IPython.display import Image, display

    data = figure_png(fig)
    close(fig)
    display(Image(data=data, format="png"))


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(round(value, 4))
    return str(value)


def print_numbers(numbers: Mapping[str, Any], title: str = "key numbers") -> None:
    """One ``name = value`` line each, rounded the same way every time (nbval compares them)."""
    print(title)
    width = max((len(k) for k in numbers), default=0)
    for key, value in numbers.items():
        print(f"  {key:<{width}} = {_fmt(value)}")
