"""Plots of the ``ordering`` scenario: ``plot_<thing>(result, ax=None) -> Figure``, never ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402  (one way to make a figure or draw on the given axes)

from simulator.scenarios.ordering import VARIANTS  # noqa: E402

COLOURS = dict(zip(VARIANTS, ("tab:red", "tab:blue", "tab:green")))




def _bars(ax: Any, result: Any, key: str) -> list[float]:
    values = [result.metrics["variants"][v][key] or 0 for v in VARIANTS]
    ax.bar(range(len(VARIANTS)), values, color=[COLOURS[v] for v in VARIANTS], edgecolor="black")
    ax.set_xticks(range(len(VARIANTS)), list(VARIANTS))
    ax.set_xlabel("design")
    return values


def plot_inversions(result: Any, ax: Any = None) -> Figure:
    """Per-key inversions the checker counted, one bar per design."""
    fig, ax = _axes(ax)
    values = _bars(ax, result, "inversions")
    for x, v in enumerate(values):
        ax.annotate(f"{v:d}", (x, v), ha="center", va="bottom")
    ax.set_ylabel("per-key inversions")
    ax.set_title(f"Out-of-order events ({result.metrics['events']} published in order)")
    return fig


def plot_partition_skew(result: Any, ax: Any = None) -> Figure:
    """Events handled per worker (consumer or partition) in each design; a hot key piles up on one."""
    fig, ax = _axes(ax)
    variants = result.metrics["variants"]
    width = 0.8 / len(VARIANTS)
    for k, name in enumerate(VARIANTS):
        loads = variants[name]["loads"]
        xs = [i + (k - (len(VARIANTS) - 1) / 2) * width for i in range(len(loads))]
        ax.bar(xs, loads, width, color=COLOURS[name], edgecolor="black",
               label=f"{name} (skew {variants[name]['skew']:.2f})")
    ax.set_xticks(range(max(len(v["loads"]) for v in variants.values())))
    ax.set_xlabel("consumer or partition")
    ax.set_ylabel("events handled")
    ax.set_title("Load per worker: max / mean is the skew")
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_throughput(result: Any, ax: Any = None) -> Figure:
    """Throughput per design, each bar labelled with its p99 processing delay."""
    fig, ax = _axes(ax)
    values = _bars(ax, result, "throughput_eps")
    for x, (v, name) in enumerate(zip(values, VARIANTS)):
        p99 = result.metrics["variants"][name]["p99_delay_ms"] or 0.0
        ax.annotate(f"p99 {p99:.0f} ms", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("throughput (events/s)")
    ax.set_title("What ordering costs")
    return fig


def plot_ordering(result: Any) -> Figure:
    """The default report figure: inversions, skew and throughput side by side."""
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    plot_inversions(result, ax=axes[0])
    plot_partition_skew(result, ax=axes[1])
    plot_throughput(result, ax=axes[2])
    fig.suptitle(f"ordering, seed {result.config.seed}")
    fig.tight_layout()
    return fig
