"""Plots of the ``loss`` and ``duplicates`` scenarios: ``plot_<thing>(result, ax=None) -> Figure``,
never ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402

DEDUPE_COLOURS = {"off": "tab:red", "redis": "tab:orange", "db": "tab:green"}
DEDUPE_LABELS = {"off": "no dedupe", "redis": "Redis SET NX", "db": "DB unique key (same tx)"}
# redis and db both stay at zero: distinct markers and dashes keep both lines visible
DEDUPE_STYLES = {"off": ("o", "-"), "redis": ("s", "--"), "db": ("^", ":")}


def _bar_pair(ax: Any, left: list[int], right: list[int], left_style: dict[str, Any],
              right_style: dict[str, Any]) -> None:
    """Two bars per position, each labelled with its value (a zero bar is otherwise invisible)."""
    xs = np.arange(len(left))
    for offset, values, style in ((-0.2, left, left_style), (0.2, right, right_style)):
        bars = ax.bar(xs + offset, values, 0.4, edgecolor="black", **style)
        ax.bar_label(bars, fontsize=8)
    ax.set_ylim(0, 1.35 * max([1, *left, *right]))  # head room for the labels and the legend


# --------------------------------------------------------------------------- loss

def plot_loss_matrix(result: Any, ax: Any = None) -> Figure:
    """Heatmap of lost messages: one row per design, one column per crash target, numbers in cells."""
    rows, targets = result.rows, result.targets
    fig, ax = _axes(ax, figsize=(1.3 * len(targets) + 4, 0.45 * len(rows) + 1.8))
    lost = np.array([[result.cell(r, t).lost for t in targets] for r in rows], dtype=float)
    image = ax.imshow(lost, cmap="Reds", aspect="auto", vmin=0, vmax=max(1.0, float(lost.max())))
    for i, row in enumerate(rows):
        for j, target in enumerate(targets):
            value = int(lost[i, j])
            # dark text on pale cells, white on dark ones, so every number stays readable
            colour = "white" if value > 0.6 * lost.max() and value else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    safe = {c.design.label for c in result.cells if c.design.safe}
    for label in ax.get_yticklabels():  # the design the lesson recommends
        if label.get_text() in safe:
            label.set_fontweight("bold")
    ax.set_xlabel("crash target")
    ax.set_ylabel("queue / publisher / consumer ack")
    ax.set_title(f"Lost messages per design and crash (seed {result.config.seed})")
    fig.colorbar(image, ax=ax, label="lost messages")
    return fig


def plot_reseed(result: Any, ax: Any = None) -> Figure:
    """Vouchers granted over time after Redis lost its stock key: a naive reseed to the full
    stock climbs past the stock line, a reseed from the DB ledger stops at it."""
    fig, ax = _axes(ax)
    labels = {"full": "naive reseed to full stock", "ledger": "reseed from the DB ledger"}
    colours = {"full": "tab:red", "ledger": "tab:green"}
    for policy in ("full", "ledger"):
        times = result.grant_times[policy]
        ax.step([0.0, *times], range(len(times) + 1), where="post", color=colours[policy],
                label=f"{labels[policy]} (oversold {result.reseed[policy]['oversold']})")
    ax.axhline(result.reseed["full"]["stock"], color="grey", linestyle=":", label="stock")
    ax.axvline(result.config.redis_crash_at, color="black", linestyle="--", linewidth=1,
               label="Redis crash (no persistence)")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("vouchers granted")
    ax.set_title("Rebuilding the Redis stock key")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_safety_stock(result: Any, ax: Any = None) -> Figure:
    """Per safety stock: decrements the AOF everysec crash rolled back, and the oversell left."""
    fig, ax = _axes(ax)
    rows = result.safety
    _bar_pair(ax, [r["redis_lost_decrements"] or 0 for r in rows], [r["oversold"] for r in rows],
              {"color": "tab:orange", "label": "decrements lost by Redis"},
              {"color": "tab:red", "label": "vouchers oversold"})
    ax.set_xticks(range(len(rows)), [str(r["safety_stock"]) for r in rows])
    ax.set_xlabel("safety stock held back")
    ax.set_ylabel("vouchers")
    ax.set_title("A safety stock absorbs the AOF everysec loss window")
    ax.legend(loc="upper center", fontsize=8, ncols=2)
    return fig


def plot_loss(result: Any) -> Figure:
    """The default report figure: the loss matrix above the two Redis experiments."""
    fig = plt.figure(figsize=(14, 10), layout="constrained")
    # subfigures: the matrix's long row labels must not push the lower plots sideways
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.3, 1))
    plot_loss_matrix(result, ax=top.subplots())
    left, right = bottom.subplots(1, 2)
    plot_reseed(result, ax=left)
    plot_safety_stock(result, ax=right)
    return fig


# --------------------------------------------------------------------------- duplicates

def plot_duplicates(result: Any, ax: Any = None) -> Figure:
    """Double-granted vouchers against the ack-loss probability, one line per dedupe mode."""
    fig, ax = _axes(ax)
    rates = list(result.config.ack_loss_rates)
    for mode in result.config.dedupe:
        runs = [result.sweep_run(mode, rate) for rate in rates]
        marker, dashes = DEDUPE_STYLES[mode]
        ax.plot(rates, [r["double_granted"] for r in runs], marker=marker, linestyle=dashes,
                color=DEDUPE_COLOURS[mode], markersize=7 if mode == "off" else 5,
                label=f"{DEDUPE_LABELS[mode]} (duplicate deliveries up to "
                      f"{max(r['duplicate_deliveries'] for r in runs)})")
    ax.set_xlabel("ack-loss probability")
    ax.set_ylabel("double-granted vouchers")
    ax.set_title("Duplicate deliveries become duplicate vouchers only without dedupe")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_crash_duplicates(result: Any, ax: Any = None) -> Figure:
    """Per crash point and dedupe mode: double grants and submissions marked seen but never granted."""
    fig, ax = _axes(ax)
    runs = result.crash_runs
    _bar_pair(ax, [r["double_granted"] for r in runs], [r["marked_seen_never_granted"] for r in runs],
              {"color": "tab:red", "label": "double-granted vouchers"},
              {"color": "tab:purple", "label": "marked seen, never granted"})
    ax.set_xticks(range(len(runs)), [f"{r['point'].split(':')[1]}\n{r['dedupe']}" for r in runs], fontsize=8)
    ax.set_xlabel("consumer crash point / dedupe mode")
    ax.set_ylabel("submissions")
    ax.set_title("Consumer killed mid-handling")
    ax.legend(loc="upper center", fontsize=8, ncols=2)
    return fig


def plot_duplicates_report(result: Any) -> Figure:
    """The default report figure: the ack-loss sweep beside the crash experiments."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.5))
    plot_duplicates(result, ax=left)
    plot_crash_duplicates(result, ax=right)
    fig.suptitle(f"duplicates, seed {result.config.seed}")
    fig.tight_layout()
    return fig
