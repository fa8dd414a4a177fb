"""``mqlab worker relay``: the outbox relay as a process of its own.

It polls the outbox for unpublished rows and runs the shared ``relay_once`` on each batch:
publish (with confirms), then mark published.  Killed between the two (the crash point
``relay:after-publish``), the row stays unpublished and the next relay publishes it again -
at-least-once, a duplicate the consumers' dedupe absorbs.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from simulator.errors import ServiceDown
from simulator.flow import relay_once
from simulator.ports import drive

if TYPE_CHECKING:
    from .worker import Context

BATCH = 100
IDLE_POLL_S = 0.05     # an empty outbox is polled this often
DOWN_BACKOFF_S = 0.25  # the DB or broker is down: rows stay, try again after this


def run_relay(ctx: "Context") -> int:
    from .worker import connect_first

    connect_first(ctx)
    ctx.mark_ready()
    last_work = time.monotonic()
    while not ctx.stop.set and not ctx.out_of_time():
        try:
            batch = ctx.ports.db.outbox_unpublished(BATCH)
        except ServiceDown:
            time.sleep(DOWN_BACKOFF_S)
            continue
        if not batch:
            if ctx.opts.idle_exit_s and time.monotonic() - last_work >= ctx.opts.idle_exit_s:
                break
            time.sleep(IDLE_POLL_S)
            continue
        started, cpu = time.perf_counter(), time.process_time()
        try:
            published = drive(relay_once(ctx.flow_ports, ctx.policy, batch, ctx.opts.name))
        except ServiceDown:
            time.sleep(DOWN_BACKOFF_S)  # mark_published found the DB down: the rows come again
            continue
        ctx.timings.add("relay.batch", time.perf_counter() - started)
        ctx.timings.add("relay.cpu", time.process_time() - cpu)
        if published < len(batch):
            time.sleep(DOWN_BACKOFF_S)  # some publishes gave up (broker down): do not spin
        last_work = time.monotonic()
    return 0
