"""A diagram of the flash-sale architecture with the queue's depth at a chosen moment.

``plot_topology(source, t=None, ax=None) -> Figure`` draws clients -> load balancer -> API
servers -> exchange -> queue -> consumers -> Redis / DB / SMS gateway with matplotlib patches and
arrows (no graphviz).  ``source`` is any of:

* a result with ``series`` (``t``, ``queue_depth``, optionally ``unacked``) and ``config``
  (``servers``, ``consumers``, optionally ``mode``) - a flash-sale or sync-vs-async result;
* a live ``World`` - its broker is read as it is now;
* a mapping snapshot ``{"t", "queue_depth", "unacked", "servers", "consumers", "mode"}``.

With a series, ``t`` picks the sample shown (the last one taken at or before ``t``); ``None``
shows the moment the queue was deepest.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from simulator.errors import InputError  # noqa: E402
from simulator.plots import _axes  # noqa: E402

__all__ = ["plot_topology", "snapshot", "COMPONENTS"]

COMPONENTS = ("clients", "load balancer", "API servers", "exchange", "queue", "consumers", "Redis",
              "DB", "SMS gateway")
# centre (x, y) of each box in data units; the stores share the right-hand column
_AT = {"clients": (0.8, 2.0), "load balancer": (2.4, 2.0), "API servers": (4.0, 2.0),
       "exchange": (5.6, 2.0), "queue": (7.2, 2.0), "consumers": (8.8, 2.0),
       "Redis": (10.8, 3.4), "DB": (10.8, 2.0), "SMS gateway": (10.8, 0.6)}
_W, _H = 1.35, 1.0
_IDLE = "#dddddd"


def snapshot(source: Any, t: float | None = None) -> dict[str, Any]:
    """What the diagram shows: sizes of the tiers and the queue at one moment."""
    if isinstance(source, Mapping):
        snap = dict(source)
        missing = [k for k in ("queue_depth", "servers", "consumers") if k not in snap]
        if missing:
            raise InputError("source", sorted(snap), f"a snapshot with {', '.join(missing)}")
        snap.setdefault("unacked", 0)
        snap.setdefault("mode", "async")
        snap.setdefault("t", t)
        return snap
    if hasattr(source, "broker") and hasattr(source, "env"):  # a live World
        from simulator.flow import QUEUE

        cfg, up = source.config, source.broker.up
        return {"t": source.env.now, "queue_depth": source.broker.depth(QUEUE) if up else 0,
                "unacked": source.broker.unacked(QUEUE) if up else 0, "servers": cfg.servers,
                "consumers": cfg.consumers, "mode": cfg.mode}
    series, cfg = getattr(source, "series", None), getattr(source, "config", None)
    if not isinstance(series, Mapping) or not series.get("t") or cfg is None:
        raise InputError("source", type(source).__name__,
                         "a result with series and config, a World, or a snapshot mapping")
    times = series["t"]
    depth = series["queue_depth"]
    if t is None:
        i = max(range(len(depth)), key=lambda k: (depth[k], -k))  # first time at the peak
    else:
        i = max(bisect_right(times, t) - 1, 0)
    unacked = series.get("unacked")
    return {"t": times[i], "queue_depth": int(depth[i]), "unacked": int(unacked[i]) if unacked else 0,
            "servers": cfg.servers, "consumers": cfg.consumers, "mode": getattr(cfg, "mode", "async")}


def _box(ax: Any, name: str, colour: str, *details: str) -> None:
    x, y = _AT[name]
    ax.add_patch(FancyBboxPatch((x - _W / 2, y - _H / 2), _W, _H, boxstyle="round,pad=0.03",
                                facecolor=colour, edgecolor="black", linewidth=1))
    ax.text(x, y + 0.25, name, ha="center", va="center", fontsize=9, weight="bold")
    for i, detail in enumerate(details):
        ax.text(x, y - 0.05 - 0.27 * i, detail, ha="center", va="center", fontsize=8)


def _arrow(ax: Any, a: str, b: str, colour: str = "black", bend: float = 0.0) -> None:
    (xa, ya), (xb, yb) = _AT[a], _AT[b]
    ax.add_patch(FancyArrowPatch((xa + _W / 2, ya), (xb - _W / 2, yb), arrowstyle="-|>",
                                 mutation_scale=12, color=colour, linewidth=1.2,
                                 connectionstyle=f"arc3,rad={bend}"))


def plot_topology(source: Any, t: float | None = None, ax: Any = None) -> Figure:
    snap = snapshot(source, t)
    fig, ax = _axes(ax, figsize=(12, 4))
    sync = snap["mode"] == "sync"
    queue_colour = _IDLE if sync else ("#f4cccc" if snap["queue_depth"] else "#d9ead3")
    _box(ax, "clients", "#cfe2f3")
    _box(ax, "load balancer", "#cfe2f3")
    _box(ax, "API servers", "#cfe2f3", f"x{snap['servers']}")
    _box(ax, "exchange", _IDLE if sync else "#fff2cc", "unused (sync)" if sync else "gift")
    _box(ax, "queue", queue_colour, f"depth {snap['queue_depth']}", f"unacked {snap['unacked']}")
    _box(ax, "consumers", _IDLE if sync else "#d9d2e9", "unused (sync)" if sync else f"x{snap['consumers']}")
    for store in ("Redis", "DB", "SMS gateway"):
        _box(ax, store, "#ead1dc")
    for a, b in (("clients", "load balancer"), ("load balancer", "API servers")):
        _arrow(ax, a, b)
    # the work runs in the servers (sync) or in the consumers behind the queue (async)
    worker = "API servers" if sync else "consumers"
    for a, b in (("API servers", "exchange"), ("exchange", "queue"), ("queue", "consumers")):
        _arrow(ax, a, b, _IDLE if sync else "black")
    for store, bend in (("Redis", -0.25), ("DB", 0.35), ("SMS gateway", 0.25)):
        _arrow(ax, worker, store, bend=bend if sync else 0.0)  # sync arrows arc over the idle queue
    when = "" if snap.get("t") is None else f" at t = {snap['t']:.2f} s"
    ax.set_title(f"flash-sale topology ({snap['mode']}){when}")
    ax.set_xlim(-0.1, 11.6)
    ax.set_ylim(-0.1, 4.1)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig
