"""``mqlab worker loadgen``: the clients and the API, as one process.

It draws the same arrivals as the SimPy world (the seeded ``arrivals`` stream, the same
message ids ``m1, m2 ...`` and users), waits for each arrival on the wall clock (open loop:
if it falls behind it does not wait), and runs the shared ``accept`` step for each one:
publish with confirms, or the outbox write.  The client's view is recorded as ``submit``
(invoke, then ok with status 200 or fail), as the model's clients do.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator

from simulator.flow import ROUTING_KEY, accept
from simulator.messages import Message, submission_body
from simulator.ports import drive
from simulator.rng import stream
from simulator.sim.loadgen import arrival_times

if TYPE_CHECKING:
    from .worker import Context

API = "api"  # the process name the API's steps are recorded under
START_WAIT_S = 60.0


def _wait_for_start(ctx: "Context") -> bool:
    """Started ahead of time (its imports take a while), it waits here for the go signal, so
    the load begins the moment the runner says every consumer is ready."""
    path = ctx.opts.start_file
    limit = time.monotonic() + START_WAIT_S
    while path is not None and not path.exists():
        if ctx.stop.set or time.monotonic() >= limit:
            return False
        time.sleep(0.01)
    return True


def submissions(cfg) -> Iterator[tuple[float, Message]]:
    """``(arrival time, message)`` for every submission, exactly as ``World._arrivals`` makes them.

    Made one at a time as the load runs, so the load generator's memory does not grow with the
    size of the burst (only the arrival times are drawn up front)."""
    times = arrival_times(stream(cfg.seed, "arrivals"), cfg.submissions, profile=cfg.arrival_profile,
                          rate=cfg.arrival_rate, decay_s=cfg.spike_decay_s, steps=cfg.piecewise)
    payloads = stream(cfg.seed, "payloads")
    for i, t in enumerate(times):
        mid = f"m{i + 1}"
        body = submission_body(mid, f"user-{i + 1}")
        if cfg.invalid_fraction and payloads.random() < cfg.invalid_fraction:
            body = {**body, "schema_version": 2}  # a producer that drifted to a new schema
        yield t, Message(message_id=mid, correlation_id=f"c{i + 1}", routing_key=ROUTING_KEY,
                         body=body, persistent=cfg.persistent)


def run_loadgen(ctx: "Context") -> int:
    from .worker import connect_first

    cfg, rec = ctx.opts.config, ctx.history.record
    plan = submissions(cfg)
    connect_first(ctx)
    ctx.mark_ready()
    if not _wait_for_start(ctx):
        return 1
    start = time.monotonic()
    for at, msg in plan:
        if ctx.stop.set or ctx.out_of_time():
            return 1  # stopped before every submission was made: the runner says so
        delay = at - (time.monotonic() - start)
        if delay > 0:
            time.sleep(delay)
        msg.timestamp = time.time()
        rec("invoke", "submit", "client", {"user": msg.key}, msg_id=msg.message_id,
            corr_id=msg.correlation_id)
        began, cpu = time.perf_counter(), time.process_time()
        status = drive(accept(ctx.flow_ports, ctx.policy, msg, API))
        ctx.timings.add("api.accept", time.perf_counter() - began)
        ctx.timings.add("api.cpu", time.process_time() - cpu)
        rec("ok" if status == 200 else "fail", "submit", "client", {"status": status},
            msg_id=msg.message_id, corr_id=msg.correlation_id)
    return 0
