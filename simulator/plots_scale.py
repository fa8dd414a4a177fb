"""Plots of the ``scale`` scenario: ``plot_<thing>(result, ax=None) -> Figure``, never ``plt.show()``."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402  (one way to make a figure or draw on the given axes)

from simulator.scenarios.scale_model import SCALE_OUT, SCALE_UP, VARIANTS  # noqa: E402

COLOURS = {SCALE_OUT: "tab:blue", SCALE_UP: "tab:orange"}




def _nan(values: list[Any]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def plot_scale_latency(result: Any, ax: Any = None) -> Figure:
    """p50 and p99 response per architecture, side by side, each bar labelled with its value."""
    fig, ax = _axes(ax)
    width = 0.38
    xs = range(len(VARIANTS))
    for offset, key, hatch in ((-width / 2, "p50_ms", ""), (width / 2, "p99_ms", "//")):
        values = _nan([result.variants[v][key] for v in VARIANTS])
        bars = ax.bar([x + offset for x in xs], values, width, label=key.removesuffix("_ms"), hatch=hatch,
                      color=[COLOURS[v] for v in VARIANTS], edgecolor="black")
        ax.bar_label(bars, fmt="%.1f")
    ax.set_xticks(list(xs), list(VARIANTS))
    ax.margins(y=0.15)  # room for the labels
    ax.set_xlabel("architecture")
    ax.set_ylabel("response time (ms)")
    ax.set_title("Latency of successful requests")
    ax.legend(loc="upper left")
    return fig


def plot_utilisation_knee(result: Any, ax: Any = None) -> Figure:
    """Simulated mean response against utilisation, on the M/M/c curve; 60-70 % shaded."""
    fig, ax = _axes(ax)
    knee, curve = result.metrics["knee"], result.analytic["knee_curve"]
    ax.axvspan(0.6, 0.7, color="grey", alpha=0.2, label="usual trigger (60-70 %)")
    ax.plot(curve["rho"], curve["mean_ms"], color="black", label="M/M/c (Erlang C)")
    ax.plot(knee["rho"], knee["simulated_mean_ms"], "o", color="tab:red", label="simulated")
    ax.set_xlim(0, 1)
    # linear on purpose: the bend is the lesson (a log axis would flatten it)
    ax.set_ylim(0, 1.25 * max(knee["simulated_mean_ms"] + [curve["mean_ms"][0]]))
    ax.set_xlabel("utilisation rho")
    ax.set_ylabel("mean response (ms)")
    ax.set_title(f"The knee: {knee['cores']} core(s), {knee['cpu_ms']:g} ms of CPU per request")
    ax.legend(loc="upper left")
    return fig


def plot_failure_timeline(result: Any, ax: Any = None) -> Figure:
    """Successful answers per second for each architecture; the dead machine's window shaded."""
    fig, ax = _axes(ax)
    tl = result.metrics["timeline"]
    centres = [t + tl["bin_s"] / 2 for t in tl["t"]]
    for v in VARIANTS:
        ax.plot(centres, tl[v]["ok_per_s"], color=COLOURS[v], label=v)
    cfg = result.config
    if cfg.failure_at_s is not None:
        ax.axvline(cfg.failure_at_s, color="red", linestyle="--", label="machine dies")
        ax.axvspan(cfg.failure_at_s, cfg.failure_at_s + cfg.replacement_downtime_s,
                   color="red", alpha=0.1)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("successful requests / s")
    ax.set_title("Throughput through a machine failure")
    ax.legend(loc="lower right")
    return fig


def plot_cost(result: Any, ax: Any = None) -> Figure:
    """Hourly cost against total cores: linear for more machines, super-linear for a bigger one."""
    fig, ax = _axes(ax)
    cc = result.analytic["cost_curve"]
    ax.plot(cc["total_cores"], cc["scale_out_per_hour"], color=COLOURS[SCALE_OUT],
            label=f"scale-out ({result.config.cores_per_server}-core machines)")
    ax.plot(cc["total_cores"], _nan(cc["scale_up_per_hour"]), color=COLOURS[SCALE_UP],
            label="scale-up (one machine)")
    ax.axvline(cc["core_ceiling"], color="grey", linestyle=":", label="hardware ceiling")
    for v in VARIANTS:
        m = result.variants[v]
        ax.scatter([m["total_cores"]], [m["cost_per_hour"]], color=COLOURS[v], zorder=3)
    ax.set_xlabel("total cores")
    ax.set_ylabel("cost per hour")
    ax.set_title("Price of capacity")
    ax.legend(loc="upper left")
    return fig


def plot_scale(result: Any) -> Figure:
    """The report figure: the four views on one page."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    plot_scale_latency(result, ax=axes[0][0])
    plot_failure_timeline(result, ax=axes[0][1])
    plot_utilisation_knee(result, ax=axes[1][0])
    plot_cost(result, ax=axes[1][1])
    fig.suptitle(f"scale-out vs scale-up, seed {result.config.seed}")
    fig.tight_layout()
    return fig
