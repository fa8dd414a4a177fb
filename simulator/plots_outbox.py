"""Plots of the outbox scenario: ``plot_<thing>(result, ax=None) -> Figure``, never ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from simulator.plots import _axes  # noqa: E402

# one colour per meaning: green is safe, blue absorbed, orange/purple the dual-write anomalies,
# red what the lesson must never allow, grey a cell the flow cannot produce
STATE_COLOURS = {
    "ok": "#7fc97f", "conserved": "#7fc97f",
    "duplicate": "#9ecae1", "restored": "#9ecae1", "reused": "#9ecae1",
    "orphan": "#fdae61", "ghost": "#b39ddb",
    "lost": "#e34a33", "double-grant": "#e34a33", "leak": "#e34a33", "over-credit": "#e34a33",
    "n/a": "#e0e0e0",
}


def _detail(cell: Any) -> str:
    """The number behind a cell's state, for the second line of its text."""
    c, state = cell.counts, cell.state
    if state in ("orphan", "ghost", "lost"):
        return f"× {c[state]}"
    if state == "duplicate":
        return f"{c['absorbed']} absorbed"
    if state == "restored":
        return f"{c['compensations']} given back"
    if state == "reused":
        return f"{c['reused']} reused"
    if state in ("leak", "over-credit"):
        return f"stock {cell.stock['balance']:+d}"
    if state == "ok" and c["resent"]:
        return f"{c['resent']} re-sent"
    if state == "ok" and cell.stock["balance"]:
        return f"stock {cell.stock['balance']:+d}"  # the message side is fine, the stock is not
    return ""


def plot_crash_matrix(result: Any, ax: Any = None) -> Figure:
    """Pattern x crash point, each cell coloured by what the checker found in that run."""
    cfg = result.config
    fig, ax = _axes(ax, figsize=(1.5 * len(cfg.columns) + 3, 0.7 * len(cfg.patterns) + 2))
    cols, rows = list(cfg.columns), list(cfg.patterns)
    for cell in result.cells:
        x, y = cols.index(cell.column), rows.index(cell.pattern)
        ax.add_patch(Rectangle((x, y), 1, 1, facecolor=STATE_COLOURS.get(cell.state, "white"),
                               edgecolor="white", linewidth=2))
        detail = _detail(cell)
        ax.text(x + 0.5, y + 0.5, cell.state + ("\n" + detail if detail else ""),
                ha="center", va="center", fontsize=8)
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(rows), 0)  # first pattern on top, as in the report's table
    ax.set_xticks([i + 0.5 for i in range(len(cols))], cols, rotation=25, ha="right", fontsize=8)
    ax.set_yticks([i + 0.5 for i in range(len(rows))], rows, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("crash point (or fault)")
    ax.set_title(f"crash-point explorer, seed {cfg.seed}")
    shown = dict.fromkeys(c.state for c in result.cells)
    ax.legend(handles=[Patch(facecolor=STATE_COLOURS.get(s, "white"), label=s) for s in shown],
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def plot_outbox_lag(result: Any, ax: Any = None) -> Figure:
    """Outbox runs: how long each committed row waited for the relay to publish it."""
    fig, ax = _axes(ax)
    for label, points in result.lag.items():
        if points:
            ax.scatter([t for t, _ in points], [lag for _, lag in points], s=10, label=label)
    ax.set_xlabel("row committed at (simulated s)")
    ax.set_ylabel("relay lag (s)")
    ax.set_title("outbox: commit to publish")
    if ax.collections:
        ax.legend(title="fault", loc="upper left", fontsize=8)
    return fig


def plot_outbox(result: Any) -> Figure:
    """The default report figure: the matrix beside the relay lag."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(17, 5), gridspec_kw={"width_ratios": [2.2, 1]})
    plot_crash_matrix(result, ax=left)
    plot_outbox_lag(result, ax=right)
    fig.tight_layout()
    return fig
