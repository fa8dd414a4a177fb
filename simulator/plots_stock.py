"""Plots of the stock scenario: ``plot_<thing>(result, ax=None) -> Figure``, never ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402


def plot_oversell(result: Any, ax: Any = None) -> Figure:
    """Vouchers granted beyond the offer, per strategy, one bar per consumer count."""
    fig, ax = _axes(ax, figsize=(8, 3.8))
    cfg = result.config
    levels, strategies = cfg.consumer_levels, cfg.strategies
    width = 0.8 / len(levels)
    for i, n in enumerate(levels):
        xs = [k + (i - (len(levels) - 1) / 2) * width for k in range(len(strategies))]
        values = [result.point(s, n).oversold for s in strategies]
        ax.bar(xs, values, width=width, label=f"{n} consumers")
        for x, v in zip(xs, values):
            ax.text(x, v, str(v), ha="center", va="bottom", fontsize=7)
    if cfg.safety_stock:
        # up to here the held-back vouchers absorb it; beyond, more was sold than exists
        ax.axhline(cfg.safety_stock, color="grey", linestyle=":", label=f"safety stock ({cfg.safety_stock})")
    ax.set_xticks(range(len(strategies)), strategies, rotation=15, fontsize=8)
    ax.set_ylabel("granted beyond the offer")
    ax.set_title(f"oversell (offered {cfg.offered} of {cfg.stock})")
    ax.legend(fontsize=8)
    return fig


def plot_lock_wait(result: Any, ax: Any = None) -> Figure:
    """Share of the handling time spent waiting for the stock row lock, against consumers."""
    fig, ax = _axes(ax)
    cfg = result.config
    for s in cfg.strategies:
        ax.plot(cfg.consumer_levels, [100 * result.point(s, n).lock_share for n in cfg.consumer_levels],
                marker="o", label=s)
    ax.set_xscale("log", base=2)
    ax.set_xticks(cfg.consumer_levels, [str(n) for n in cfg.consumer_levels])
    ax.set_xlabel("consumers")
    ax.set_ylabel("row-lock wait (% of handling time)")
    ax.set_title("lock wait on the stock row")
    ax.legend(fontsize=8)
    return fig


def plot_ttl(result: Any, ax: Any = None) -> Figure:
    """Vouchers taken over time when the stock key has a TTL: the line should go flat at it."""
    fig, ax = _axes(ax)
    for run in result.ttl:
        if run.takes:
            ax.step(run.takes, range(1, len(run.takes) + 1), where="post", label=run.strategy)
    if result.ttl:
        ax.axvline(result.ttl[0].ttl_s, color="grey", linestyle=":", label="TTL expires")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("vouchers taken")
    ax.set_title(f"event end by TTL ({result.config.ttl_consumers} consumers)")
    if result.ttl:
        ax.legend(fontsize=8)
    return fig


def plot_redis_ceiling(result: Any, ax: Any = None) -> Figure:
    """Closed-loop DECR clients: throughput levels off at one command thread's 1/command_time."""
    fig, ax = _axes(ax)
    bench = result.bench
    clients = [b.clients for b in bench]
    ax.plot(clients, [b.commands_per_s for b in bench], marker="o", label="measured")
    ax.plot(clients, [b.predicted_per_s for b in bench], linestyle="--", label="min(n / (rtt + t), 1 / t)")
    if bench:
        ax.axhline(bench[0].ceiling_per_s, color="grey", linestyle=":", label="1 / command_time")
    ax.set_xscale("log", base=2)
    ax.set_xticks(clients, [str(n) for n in clients])
    ax.set_xlabel("clients")
    ax.set_ylabel("commands/s")
    ax.set_title("Redis: one command thread")
    ax.legend(fontsize=8)
    return fig


def plot_stock_lesson(result: Any) -> Figure:
    """The default report figure: oversell, lock wait, TTL and the Redis ceiling."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    plot_oversell(result, ax=axes[0][0])
    plot_lock_wait(result, ax=axes[0][1])
    plot_ttl(result, ax=axes[1][0])
    plot_redis_ceiling(result, ax=axes[1][1])
    fig.suptitle(f"stock strategies, seed {result.config.seed}")
    fig.tight_layout()
    return fig
