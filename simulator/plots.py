"""Plots: ``plot_<thing>(result, ax=None) -> Figure``; they never call ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def _axes(ax: Any, figsize: tuple[float, float] = (7, 3.5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_queue_depth(result: Any, ax: Any = None) -> Figure:
    """Queue depth and unacked messages over simulated time: the burst absorbed and drained."""
    fig, ax = _axes(ax)
    s = result.series
    ax.plot(s["t"], s["queue_depth"], label="ready in queue")
    ax.plot(s["t"], s["unacked"], label="unacked (at consumers)")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("messages")
    ax.set_title("Queue depth")
    ax.legend(loc="upper right")
    return fig


def plot_stock(result: Any, ax: Any = None) -> Figure:
    """Redis stock and vouchers granted over time; they must meet at the stock line, not cross it."""
    fig, ax = _axes(ax)
    s = result.series
    ax.plot(s["t"], s["redis_stock"], label="Redis stock")
    ax.plot(s["t"], s["vouchers"], label="vouchers granted")
    ax.axhline(result.config.stock, color="grey", linestyle=":", label="initial stock")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("vouchers")
    ax.set_title("Stock and grants")
    ax.legend(loc="center right")
    return fig


def plot_flash_sale(result: Any) -> Figure:
    """The default report figure: queue depth beside stock and grants."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    plot_queue_depth(result, ax=left)
    plot_stock(result, ax=right)
    fig.suptitle(f"flash sale, seed {result.config.seed}: "
                 f"{result.metrics['vouchers_granted']} vouchers, "
                 f"checker {'valid' if result.checker.valid else 'INVALID'}")
    fig.tight_layout()
    return fig
