"""The real-service rows' shared machinery: one interleaved adapter-vs-raw row, and the guard
that retries a row once when a service went away mid-run.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from benchmarks import real_targets
from benchmarks.common import Row, Section, Stat, Timing, timed

STOCK = "bench:stock"
STEADY_REPEATS = 5


def steady(repeats: int) -> int:
    """Repeats for a row whose runs swing most on this shared machine (each operation waits for
    an fsync, or a run lasts about a second, as the Redis rows' do): at least STEADY_REPEATS interleaved pairs, so
    one slow patch of disk or CPU does not decide the median.  ``--quick`` (1) stays 1."""
    return repeats if repeats == 1 else max(repeats, STEADY_REPEATS)

Runner = Callable[[str], Any]  # tag -> count, or (count, (wall, cpu)) when it times itself


def pair_row(sec: Section, id: str, label: str, n: int, repeats: int, adapter: Runner | None,
              reference: Runner, adapter_na: str = "", prepare: Callable[[str], None] | None = None) -> Row:
    """Interleave adapter and raw runs (alternating who goes first) and fill one row.

    ``prepare(tag)`` runs before each timed run, off the clock (filling the queue to consume).
    A runner that returns ``(count, (wall, cpu))`` has timed its own measured part.
    """
    row = Row(id, sec.name, label, group=sec.group)  # added to the section only once complete
    runs: dict[str, list[Timing]] = {"adapter": [], "raw": []}
    sides = {"adapter": adapter, "raw": reference}
    for rep in range(repeats):
        order = ["adapter", "raw"] if rep % 2 == 0 else ["raw", "adapter"]
        for side in order:
            fn = sides[side]
            if fn is None:
                continue
            tag = f"{side[0]}{rep}{uuid.uuid4().hex[:6]}"
            if prepare is not None:
                prepare(tag)
            done, t = timed(lambda: fn(tag))
            if isinstance(done, tuple):
                done, (wall, cpu) = done
                t = Timing(wall, cpu)
            expect(done, n, f"{id} {side}")
            runs[side].append(t)
    raw_rate = Stat.of(n / t.wall for t in runs["raw"])
    if adapter is None:
        for col in ("adapter op/s", "raw op/s", "adapter/raw", "adapter CPU us/op", "raw CPU us/op"):
            if col.startswith("adapter"):
                row.set_na(col, adapter_na)
            else:
                row.values[col] = raw_rate if col == "raw op/s" else \
                    Stat.of(t.cpu / n * 1e6 for t in runs["raw"])
    else:
        adapter_rate = Stat.of(n / t.wall for t in runs["adapter"])
        row.values.update({"adapter op/s": adapter_rate, "raw op/s": raw_rate,
                           "adapter/raw": adapter_rate.median / raw_rate.median,
                           "adapter CPU us/op": Stat.of(t.cpu / n * 1e6 for t in runs["adapter"]),
                           "raw CPU us/op": Stat.of(t.cpu / n * 1e6 for t in runs["raw"])})
    row.values["n"] = n
    sec.rows.append(row)
    real_targets.ratio_target(sec, row, n, adapter, reference, prepare)
    return row


def guard(sec: Section, id: str, label: str, body: Callable[[], Any], recover: Callable[[], None]) -> None:
    """Run one row's measurement; if it fails (a service went away mid-run), let ``recover``
    wait for the service and reset, and try once more; a second failure is an n/a row."""
    last: BaseException | None = None
    for attempt in range(2):
        try:
            body()
            if last is not None:  # say so: the first attempt's failure is part of the result
                for r in sec.rows:
                    if r.id == id:
                        r.note = "; ".join(x for x in (r.note, f"measured on a retry, the first attempt "
                                                       f"failed ({type(last).__name__}: {str(last)[:120]})") if x)
            return
        except Exception as exc:  # noqa: BLE001 - reported in the row
            last = exc
            if attempt == 0:
                try:
                    recover()
                except Exception:  # noqa: BLE001 - the retry will fail and say so
                    pass
    sec.row(id, label).na = (f"n/a: failed twice, the service went away during the run "
                             f"({type(last).__name__}: {str(last)[:160]})")


def expect(done: int, n: int, what: str) -> None:
    if done != n:
        raise RuntimeError(f"{what}: completed {done} of {n}")


def raw_redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)
