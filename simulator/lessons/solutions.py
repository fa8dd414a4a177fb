"""Exercise solutions, kept out of the notebooks: ``show_solution(lesson, n)`` reveals one.

Each solution is a short explanation plus code that answers the exercise; the tests run
every solution's code so a solution cannot rot when a scenario changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Solution", "SOLUTIONS", "show_solution", "run_solution"]


@dataclass(frozen=True)
class Solution:
    explanation: str
    code: str


SOLUTIONS: dict[tuple[int, int], Solution] = {}


def add(lesson: int, number: int, explanation: str, code: str) -> None:
    SOLUTIONS[(lesson, number)] = Solution(explanation.strip(), code.strip() + "\n")


def run_solution(lesson: int, number: int) -> dict[str, Any]:
    """Execute a solution's code in a fresh namespace; returns that namespace."""
    namespace: dict[str, Any] = {}
    exec(compile(SOLUTIONS[(lesson, number)].code, f"<solution {lesson}.{number}>", "exec"), namespace)
    return namespace


def show_solution(lesson: int, number: int, run: bool = True) -> None:
    """Print the explanation and the code; with ``run`` also execute it (its prints appear)."""
    sol = SOLUTIONS[(lesson, number)]
    print(sol.explanation)
    print()
    print(sol.code)
    if run:
        run_solution(lesson, number)



# --------------------------------------------------------------------------- lesson 06
add(6, 1, """
A requeued message goes back to its old place, but the later messages of the same user are already in
the consumer's prefetch window, so they are handled first. Prefetch 1 keeps one message in flight: the
order holds, and throughput falls to what one consumer doing one thing at a time can do.
""", """
from simulator.lessons.lesson06_ordering import run
for prefetch in (10, 1):
    r = run(7, users=300, consumers=1, prefetch=prefetch)
    m = r.metrics["variants"]["competing-consumers"]
    print(f"prefetch {prefetch:>2}: inversions {m['inversions']}, {m['throughput_eps']:.0f} events/s")
""")
add(6, 2, """
The hot user's events all go to one partition whatever the partition count. More partitions help the other
users, so throughput creeps up, but the skew grows: the hot partition's single consumer stays the bottleneck.
""", """
from simulator.lessons.lesson06_ordering import run
for p in (4, 8, 16):
    r = run(7, users=300, partitions=p, hot_key_share=0.3)
    v = r.metrics["variants"]
    print(f"{p:>2} partitions: log {v['partitioned-log']['throughput_eps']:.0f} events/s, "
          f"competing {v['competing-consumers']['throughput_eps']:.0f} events/s, "
          f"log skew {v['partitioned-log']['skew']:.2f}")
""")


# --------------------------------------------------------------------------- lesson 08
add(8, 1, """
The broker can only reorder what it still holds. With a large prefetch the consumer has already taken a
window of normal messages; a new high-priority message waits behind that window in the consumer.
""", """
from simulator.lessons.lesson08_routing import run
for prefetch in (1, 10, 50, 200):
    m = run(7, priority_prefetch=prefetch).metrics
    print(f"prefetch {prefetch:>3}: high waits {m['priority_high_wait_mean_ms']:8.1f} ms, "
          f"normal {m['priority_normal_wait_mean_ms']:8.1f} ms")
""")
add(8, 2, """
A message expires only if it waits longer than the TTL; with max-length 40 the queue never holds more than
40, so the longest wait is bounded by about 40 handler times. Above that bound nothing expires.
""", """
from simulator.lessons.lesson08_routing import run
for ttl in (150, 300, 600, 1000, 2000):
    m = run(7, ttl_ms=ttl).metrics
    print(f"TTL {ttl:>5} ms: expired {m['dlq_expired']:>3}, dropped by max-length {m['dlq_maxlen']:>3}")
""")


# --------------------------------------------------------------------------- lesson 09
add(9, 1, """
The last arrival spends almost all its time waiting in the queue behind the opening burst (about 0.7 s).
By then the stock is gone: the consumer records it as sold out and acks, with no DB grant and no gateway call.
""", """
from simulator.lessons.lesson09_tracing import run, timeline
print(timeline(run(7, pick=1000)))
""")
add(9, 2, """
None reaches the handler at any share: the gate runs first. The vouchers stay at 300 because about 700 valid
submissions still arrive, more than the stock; only when valid ones fall below the stock would grants drop.
""", """
from simulator.lessons.lesson09_tracing import run
for share in (0.05, 0.3):
    r = run(7, invalid_fraction=share)
    print(f"drifted {share:.0%}: reached handler {r.invalid['reached_handler']}, "
          f"dead-lettered {r.invalid['dead_lettered']}, vouchers {r.metrics['vouchers_granted']}")
""")


# --------------------------------------------------------------------------- lesson 00
add(0, 1, """
Read-then-write stock (`redis-get-set` or `db-read-then-write`) with several consumers: two consumers read
the same count before either writes it back, so both grant. Lesson 03 (stock) measures it.
""", """
from simulator.lessons.lesson00_start import run, summary
print(summary(run(7, submissions=600, stock=200, consumers=8, stock_strategy="redis-get-set")))
""")


# --------------------------------------------------------------------------- lesson 01
add(1, 1, """
Round robin sends a user's next request to another server, which does not hold their session in memory:
every hop is a forced re-login. Sticky balancing avoids that until the server dies; a shared store avoids
both.
""", """
from simulator.lessons.lesson01_scale import run
for balancer in ("sticky", "round-robin"):
    v = run(7, requests=3000, knee_requests=1000, failure_at_s=None, balancer=balancer).variants["scale-out"]
    print(f"{balancer:<12} re-logins {v['relogins']}, sessions lost {v['sessions_lost']}")
""")
add(1, 2, """
Faster cores shorten every request, so the big machine's p99 falls well below scale-out's (whose cores stay
ordinary). What speed cannot buy is availability: it is still one machine, and its failure stops everything.
""", """
from simulator.lessons.lesson01_scale import run
for speed in (1.0, 1.5, 2.0):
    r = run(7, requests=3000, knee_requests=1000, failure_at_s=None, arrival_profile="spike",
            scale_up_core_speed=speed)
    print(f"speed x{speed}: scale-up p99 {r.variants['scale-up']['p99_ms']:.1f} ms, "
          f"scale-out p99 {r.variants['scale-out']['p99_ms']:.1f} ms")
""")


# --------------------------------------------------------------------------- lesson 02
add(2, 1, """
A fast SMS gateway (or far fewer submissions) does it: the request holds a thread only briefly. But the
gateway's speed is not yours to choose on the day, and the spike's size is the whole point of the event.
""", """
from simulator.lessons.lesson02_async import one_run, one_summary
for latency in (200.0, 20.0):
    print(one_summary(one_run({"seed": 7, "submissions": 200, "mode": "sync", "event_db": "shared",
                               "gateway_latency_ms": latency})))
""")
add(2, 2, """
Each consumer sends about one voucher per gateway latency, so more consumers drain faster; but the arrivals
themselves are spread over the spike, and the queue cannot empty before the last submission arrives.
""", """
from simulator.lessons.lesson02_async import one_run
for consumers in (8, 16, 32):
    m = one_run({"seed": 7, "submissions": 200, "mode": "async", "event_db": "shared",
                 "consumers": consumers}).metrics
    print(f"{consumers:>2} consumers: drained at {m['drain_s']:.1f} s")
""")


# --------------------------------------------------------------------------- lesson 03
add(3, 1, """
No. Read-then-write overwrites the count with stale values, so it walks straight through the safety stock:
even 100 held back out of 200 still grants almost every submission. Only holding back everything (offering
nothing) hides it. Use an atomic take (DECR, Lua, or UPDATE ... WHERE n > 0) and keep the safety stock
for the bounded losses of lesson 04.
""", """
from simulator.lessons.lesson03_stock import run
for safety in (20, 100, 200):
    r = run(7, submissions=500, stock=200, safety_stock=safety, strategies="db-read-then-write",
            consumer_levels="16", event_ttl_s=None, redis_clients="1", redis_bench_s=0.02)
    g = r.to_dict()["grid"][0]
    print(f"safety {safety:>3}: granted {g['granted']}, oversold {g['oversold']}, held back {g['held_back']}")
""")
add(3, 2, """
DECR always subtracts, and the caller treats a negative result as "sold out", so refused takes keep pushing
the key down. The Lua script checks before it decrements, so the key is the true remaining stock: that is
the number to put on a dashboard.
""", """
from simulator.lessons.lesson03_stock import run
r = run(7, strategies="redis-decr,redis-lua", consumer_levels="4", event_ttl_s=None,
        redis_clients="1", redis_bench_s=0.02)
for g in r.to_dict()["grid"]:
    print(f"{g['strategy']:<10} granted {g['granted']}, Redis key at the end {g['redis_final']}")
""")


# --------------------------------------------------------------------------- lesson 04
add(4, 1, """
Nothing accepted is lost: requests that reached the dead API server get no 200 (the client sees an error or
a timeout and can retry), and everything already confirmed sits safely in the broker.
""", """
from simulator.lessons.lesson04_loss import one_run, one_summary
r = one_run({"seed": 7, "durable": True, "confirms": True, "ack": "manual", "crash": "producer", "crash_at": 0.5})
print(one_summary(r))
print("refused or timed out:", r.metrics["refused"] + r.metrics["timeouts"])
""")
add(4, 2, """
A persistent message reaches disk only when the broker flushes its batch. Without confirms the API answers
200 as soon as it has sent the message; a crash before the flush loses messages the client was told were
accepted. With confirms the API waits for "stored" (or retries).
""", """
from simulator.lessons.lesson04_loss import one_run, one_summary
for confirms in (False, True):
    print(one_summary(one_run({"seed": 7, "durable": True, "confirms": confirms, "ack": "manual",
                               "crash": "broker", "crash_at": 0.5})))
""")


# --------------------------------------------------------------------------- lesson 05
add(5, 1, """
No double vouchers at any ack-loss rate: the repeated id is skipped inside the transaction. The cost is
work and time: every lost ack means another delivery, another transaction that finds the id and rolls back.
""", """
from simulator.lessons.lesson05_duplicates import one_run, one_summary
for loss in (0.1, 0.5):
    print(one_summary(one_run({"seed": 7, "dedupe": "db", "ack_loss": loss, "crash": "none"})))
""")
add(5, 2, """
The consumer wrote `seen:<id>` in Redis, took the stock, and died before the DB commit. The redelivered
message finds the id already seen and is acked as a duplicate, so that submitter never gets a voucher. The
checker sees the message dequeued and nothing granted twice, so nothing looks lost; only comparing
"marked seen" with "granted" finds it.
""", """
from simulator.lessons.lesson05_duplicates import one_run, one_summary
print(one_summary(one_run({"seed": 7, "dedupe": "redis", "ack_loss": 0.0, "crash": "consumer:after-stock"})))
""")


# --------------------------------------------------------------------------- lesson 07
add(7, 1, """
The relay republishes the same message id, and the consumer's dedupe (a processed-id row in the DB
transaction) answers "duplicate". With dedupe off (lesson 05) the repeat would grant a second voucher.
""", """
from simulator.lessons.lesson07_outbox import run, summary
print(summary(run(7, submissions=60, patterns="outbox", columns="relay:after-publish")))
""")
add(7, 2, """
The script writes a hold key for the message id in the same atomic step as the decrement, so the unit
is recorded as "taken by this message" even if the consumer dies before its ledger commit. The
redelivered copy is the same message, so the unit is rightly its: giving it back and taking another would
be two commands with a crash window between them, while taking the hold over is one; the hold goes back
to stock only when the delivery that still owns it fails its DB step.
""", """
from simulator.lessons.lesson07_outbox import run, summary
print(summary(run(7, submissions=60, patterns="outbox+compensation,outbox+reservation",
                  columns="consumer:after-stock")))
""")


# --------------------------------------------------------------------------- lesson 10
add(10, 1, """
With auto ack the broker forgets a message the moment it hands it over, so everything worker 1 had
prefetched but not finished dies with it: the checker counts those submissions lost. With manual ack the
broker keeps them unacked until the commit; the dead connection puts them back in the queue and worker 2
takes them (the redeliveries), so nothing is lost.
""", """
from simulator.lessons.lesson10_real import panel_run, panel_summary
base = {"seed": 7, "consumers": 2, "gateway_latency_ms": 20.0, "kill_at": 0.8, "stock_strategy": "redis-lua"}
for ack in ("manual", "auto"):
    print(panel_summary(panel_run({**base, "ack": ack})))
""")
add(10, 2, """
The strategy is the flaw; the kill only exposes it. A GET followed by a SET is not atomic: in this seed the
two workers never happened to read the same count without a fault, but with the kill the redelivered
messages make them interleave and one unit is sold twice (oversold 1). The Lua script decrements and
checks in one Redis command, so it never oversells, kill or not.
""", """
from simulator.lessons.lesson10_real import panel_run, panel_summary
base = {"seed": 7, "consumers": 2, "gateway_latency_ms": 20.0, "ack": "manual"}
for strategy in ("redis-get-set", "redis-lua"):
    for kill_at in ("never", 0.8):
        print(panel_summary(panel_run({**base, "stock_strategy": strategy, "kill_at": kill_at})))
""")
