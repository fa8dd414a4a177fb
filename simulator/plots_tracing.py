"""Plots of the tracing scenario: ``plot_<thing>(result, ax=None) -> Figure``, never ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402
from simulator.tracing import lanes  # noqa: E402

# a step shorter than this share of the trace still gets a visible sliver
_MIN_WIDTH = 0.004


def plot_swimlanes(result: Any, ax: Any = None) -> Figure:
    """One submission's path: a lane per component, a bar per step, time from its submit."""
    fig, ax = _axes(ax, figsize=(9, 4))
    bars = result.swimlanes
    order = lanes(bars)
    t0 = min((b[1] for b in bars), default=0.0)
    span_ms = max(((b[2] - t0) * 1000.0 for b in bars), default=1.0) or 1.0
    colours = plt.get_cmap("tab10")
    for lane, start, end, label in bars:
        y = order.index(lane)
        left, width = (start - t0) * 1000.0, max((end - start) * 1000.0, span_ms * _MIN_WIDTH)
        ax.broken_barh([(left, width)], (y - 0.35, 0.7), facecolors=colours(y % 10), alpha=0.8)
        ax.text(left + width / 2, y, label, ha="center", va="center", fontsize=7, clip_on=True)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)  # first component on top: the path reads downwards
    ax.set_xlabel("ms since the submission")
    ax.set_title(f"trace of {result.corr_id} ({result.metrics['outcome']})")
    ax.grid(axis="x", alpha=0.3)
    return fig


def plot_invalid_flow(result: Any, ax: Any = None) -> Figure:
    """Drifted payloads: injected, rejected by the schema gate, dead-lettered, reached the handler."""
    fig, ax = _axes(ax, figsize=(6, 3.5))
    inv = result.invalid
    names = ["injected", "rejected\n(schema gate)", "dead-lettered\n(gift.dead)", "reached\nhandler"]
    values = [inv["injected"], inv["rejected"], inv["dead_lettered"], inv["reached_handler"]]
    colours = ["tab:grey", "tab:orange", "tab:purple", "tab:red"]
    ax.bar(range(len(values)), values, color=colours)
    for x, v in enumerate(values):
        ax.text(x, v, str(v), ha="center", va="bottom")
    ax.set_xticks(range(len(values)), names)
    ax.set_ylabel("messages")
    ax.set_title(f"invalid payloads ({result.config.schema_drift} drift, "
                 f"{result.config.invalid_fraction:.0%} of submissions)")
    return fig


def plot_tracing(result: Any) -> Figure:
    """The default report figure: the traced submission beside the invalid-payload counts."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    plot_swimlanes(result, ax=left)
    plot_invalid_flow(result, ax=right)
    fig.suptitle(f"tracing, seed {result.config.seed}: correlation "
                 f"{'ok' if result.metrics['correlation_ok'] else 'BROKEN'}")
    fig.tight_layout()
    return fig
