"""Plots of the sync-vs-async lesson and the flash-sale scorecard.

``plot_<thing>(result, ax=None) -> Figure``; they never call ``plt.show()``.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402

_MODE_COLOURS = {"sync": "tab:red", "async": "tab:blue"}


def plot_response(result: Any, ax: Any = None) -> Figure:
    """Response and time-to-voucher percentiles per variant, on one log scale (ms).

    The async API answers in milliseconds while the voucher itself comes seconds later: the
    work did not vanish, it moved off the request path.
    """
    fig, ax = _axes(ax)
    runs = [result.variants[k] for k in result.variants if k.endswith("/shared")]
    labels = ["response p50", "response p99", "voucher p50", "voucher p99"]
    width = 0.8 / max(len(runs), 1)
    x = np.arange(len(labels))
    for i, run in enumerate(runs):
        m = run.metrics
        values = [m["response_ms"]["p50"], m["response_ms"]["p99"],
                  _ms(m["time_to_voucher_s"]["p50"]), _ms(m["time_to_voucher_s"]["p99"])]
        ax.bar(x + i * width, [v or 0.0 for v in values], width, label=run.mode,
               color=_MODE_COLOURS.get(run.mode))
    ax.set_xticks(x + width * (len(runs) - 1) / 2, labels)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log)")
    ax.set_title("What the client waits for vs when the voucher arrives")
    ax.legend(loc="upper left")
    return fig


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def plot_queue_drain(result: Any, ax: Any = None) -> Figure:
    """The async queue over time: it absorbs the spike, then drains; theory's drain time dashed."""
    fig, ax = _axes(ax)
    s = result.async_.series
    ax.plot(s["t"], s["queue_depth"], label="ready in queue")
    ax.plot(s["t"], s["unacked"], label="unacked (at consumers)")
    ax.axvline(result.analytic["async_drain_s"], color="grey", linestyle="--",
               label=f"predicted drain {result.analytic['async_drain_s']:.1f} s")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("messages")
    ax.set_title("Async: the queue rises with the spike, then drains")
    ax.legend(loc="upper right")
    return fig


def plot_login_impact(result: Any, ax: Any = None) -> Figure:
    """Unrelated logins: p50 and p99 with the event on the same database vs a dedicated one."""
    fig, ax = _axes(ax)
    names = list(result.variants)
    x = np.arange(len(names))
    p50 = [result.variants[n].metrics["login_ms"]["p50"] or 0.0 for n in names]
    p99 = [result.variants[n].metrics["login_ms"]["p99"] or 0.0 for n in names]
    ax.bar(x - 0.2, p50, 0.4, label="login p50")
    ax.bar(x + 0.2, p99, 0.4, label="login p99")
    ax.axhline(result.analytic["login_dedicated_mean_ms"], color="grey", linestyle=":",
               label="M/M/c mean, logins alone")
    ax.set_xticks(x, names)
    ax.set_ylabel("login latency (ms)")
    ax.set_title("Logins outside the event: shared vs dedicated event DB")
    ax.legend(loc="upper right")
    return fig


def plot_consumers_scaling(result: Any, ax: Any = None) -> Figure:
    """Vouchers per second against consumers, beside min(c / S, rate limit)."""
    fig, ax = _axes(ax)
    rows = result.sweep
    c = [r["consumers"] for r in rows]
    ax.plot(c, [r["throughput_per_s"] or 0.0 for r in rows], "o-", label="simulated")
    ax.plot(c, [r["predicted_per_s"] for r in rows], "k--", label="predicted min(c/S, limit)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(c, [str(v) for v in c])
    ax.set_xlabel("consumers")
    ax.set_ylabel("vouchers per second")
    ax.set_title("Throughput grows with consumers until the next bottleneck")
    ax.legend(loc="lower right")
    return fig


def plot_sync_async(result: Any) -> Figure:
    """The report figure: the four views side by side."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    plot_response(result, ax=axes[0][0])
    plot_queue_drain(result, ax=axes[0][1])
    plot_login_impact(result, ax=axes[1][0])
    plot_consumers_scaling(result, ax=axes[1][1])
    fig.suptitle(f"sync vs async, seed {result.config.seed}: spike from {result.config.arrival_rate:g}/s")
    fig.tight_layout()
    return fig


_SCORE_COLUMNS = (("fcfs_violations", "FCFS violations"), ("time_to_voucher_p99_s", "voucher p99 (s)"),
                  ("rejected_while_stock_remained", "refused, stock left"), ("oversold", "oversold"),
                  ("lost", "lost"), ("duplicated", "duplicated"), ("double_granted", "double granted"))


def plot_scorecard(result: Any, ax: Any = None) -> Figure:
    """The scorecard as a table; a red cell is a harm the architecture let happen."""
    fig, ax = _axes(ax, figsize=(11, 0.6 + 0.5 * len(result.rows)))
    ax.axis("off")
    names = list(result.rows)
    cells, colours = [], []
    for name in names:
        row = result.rows[name]
        cells.append([_cell(row[key]) for key, _ in _SCORE_COLUMNS])
        colours.append(["#f4cccc" if key != "time_to_voucher_p99_s" and (row[key] or 0) > 0 else "white"
                        for key, _ in _SCORE_COLUMNS])
    table = ax.table(cellText=cells, cellColours=colours, rowLabels=names,
                     colLabels=[label for _, label in _SCORE_COLUMNS], loc="center")
    table.scale(1, 1.4)
    ax.set_title(f"flash-sale scorecard, seed {result.config.seed}")
    return fig


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)
