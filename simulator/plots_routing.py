"""Plots of the ``routing`` scenario: ``plot_<thing>(result, ax=None) -> Figure``, never ``plt.show()``."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from simulator.plots import _axes  # noqa: E402  (one way to make a figure or draw on the given axes)

from simulator.scenarios.routing import DEATH_REASONS, FANOUT_QUEUES, SLOW_QUEUE  # noqa: E402




def plot_routing_table(result: Any, ax: Any = None) -> Figure:
    """Message x queue matrix: a filled cell is a copy delivered to that queue."""
    table = result.routing_table
    fig, ax = _axes(ax, (9, 6))
    ax.imshow(table["matrix"], cmap="Greens", vmin=0, vmax=1.3, aspect="auto")
    ax.set_xticks(range(len(table["queues"])), table["queues"], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(table["rows"])), [r["label"] for r in table["rows"]], fontsize=7)
    for i, row in enumerate(table["matrix"]):
        for j, got in enumerate(row):
            if got:
                ax.text(j, i, "1", ha="center", va="center", fontsize=7)
    ax.set_xlabel("queue")
    ax.set_ylabel("published message")
    ax.set_title(f"Which queues get each message ({result.metrics['table_mismatches']} rows differ from route())")
    return fig


def plot_priority_wait(result: Any, ax: Any = None) -> Figure:
    """Mean and p99 wait of high and normal messages, with and without x-max-priority."""
    fig, ax = _axes(ax)
    setups = (("priority", "x-max-priority"), ("fifo", "no x-max-priority"))
    width = 0.2
    for k, (cls, colour) in enumerate((("high", "tab:red"), ("normal", "tab:blue"))):
        for s, stat in enumerate(("mean", "p99")):
            xs = [i + (2 * k + s - 1.5) * width for i in range(len(setups))]
            values = [result.priority[name][cls][stat] for name, _ in setups]
            ax.bar(xs, values, width, color=colour, alpha=1.0 if stat == "mean" else 0.5,
                   edgecolor="black", label=f"{cls} {stat}")
    ax.set_xticks(range(len(setups)), [label for _, label in setups])
    ax.set_yscale("log")
    ax.set_xlabel("queue declared with")
    ax.set_ylabel("wait before delivery (ms)")
    ax.set_title("Priority under a backlog")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_dead_letters(result: Any, ax: Any = None) -> Figure:
    """DLQ contents by x-death reason, beside the broker's and the consumer's own counts."""
    fig, ax = _axes(ax)
    m = result.metrics
    counted = [m[f"dlq_{r}"] for r in DEATH_REASONS]
    source = [m["consumer_rejected"], m["broker_expired"], m["broker_maxlen_dropped"]]
    xs = range(len(DEATH_REASONS))
    ax.bar([x - 0.2 for x in xs], counted, 0.4, color="tab:purple", label="in the DLQ (x-death reason)")
    ax.bar([x + 0.2 for x in xs], source, 0.4, color="tab:grey", label="rejected by consumer / expired / dropped")
    ax.set_xticks(list(xs), list(DEATH_REASONS))
    ax.set_xlabel("dead-letter reason")
    ax.set_ylabel("messages")
    ax.set_title(f"Dead letters: {m['dl_processed']} of {m['dl_published']} processed")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_slow_subscriber(result: Any, ax: Any = None) -> Figure:
    """Ready messages per fanout queue with a slow voucher service; the others stay empty."""
    fig, ax = _axes(ax)
    slow, base = result.slow_subscriber["slow"], result.slow_subscriber["baseline"]
    for q in FANOUT_QUEUES:
        p99s = (base["latency_ms"][q]["p99"], slow["latency_ms"][q]["p99"])
        ax.plot(slow["depth"]["t"], slow["depth"][q], linestyle="-" if q == SLOW_QUEUE else "--",
                label=f"{q}: p99 {p99s[0]:.0f} -> {p99s[1]:.0f} ms")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("ready messages in queue")
    ax.set_title(f"Fanout with a slow {SLOW_QUEUE} subscriber")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def plot_routing(result: Any) -> Figure:
    """The default report figure: the four plots on one page."""
    fig = plt.figure(figsize=(15, 10))
    grid = fig.add_gridspec(2, 3)
    plot_routing_table(result, ax=fig.add_subplot(grid[:, 0]))
    plot_priority_wait(result, ax=fig.add_subplot(grid[0, 1]))
    plot_dead_letters(result, ax=fig.add_subplot(grid[0, 2]))
    plot_slow_subscriber(result, ax=fig.add_subplot(grid[1, 1:]))
    fig.suptitle(f"routing, seed {result.config.seed}")
    fig.tight_layout()
    return fig
