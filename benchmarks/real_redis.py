"""Real-service rows for Redis: RedisPort against raw redis-py on the same server, one round
trip per command, pipelined, and the check-and-decrement script.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from benchmarks import references_real as raw
from benchmarks.common import Section
from benchmarks.real_pairs import STOCK, guard, pair_row, raw_redis, steady

def redis_rows(sec: Section, problem: str, url: str, sizes: dict[str, int], repeats: int) -> None:
    ids = [("real.redis.decr", "Redis DECR, one round trip each"),
           ("real.redis.decr_pipelined", "Redis DECR, pipelined 100 per round trip"),
           ("real.redis.check_and_decr", "Redis check-and-decrement script (EVALSHA)")]
    if problem:
        for id, label in ids:
            sec.row(id, label).na = problem
        return
    from real_adapters.bootstrap import make_redis_client
    from real_adapters.redis_store import RedisPort
    from real_adapters.settings import Settings

    prefix = f"mqlab-bench:{uuid.uuid4().hex[:10]}:"
    port = RedisPort(make_redis_client(Settings(redis_url=url)), key_prefix=prefix)
    client = raw_redis(url)
    key = prefix + STOCK

    def recover() -> None:
        deadline = time.monotonic() + 90
        while not port.ping() and time.monotonic() < deadline:
            time.sleep(1.0)
        port.set(STOCK, 10**12)

    def adapter_loop(call: Callable[[str], Any], n: int) -> Callable[[str], int]:
        def go(_tag: str) -> int:
            for _ in range(n):
                done = call(STOCK)
                if done.error is not None:
                    raise RuntimeError(f"adapter redis: {done}")
            return n
        return go

    def adapter_pipelined(n: int, batch: int) -> Callable[[str], int]:
        def go(_tag: str) -> int:
            done, keys = 0, [STOCK] * batch
            while done < n:
                result = port.decr_many(keys if n - done >= batch else keys[:n - done])
                if result.error is not None:
                    raise RuntimeError(f"adapter redis: {result}")
                done += len(result.value)
            return done
        return go

    n, m = sizes["redis"], sizes["pipelined"]
    bodies = [
        lambda: pair_row(sec, ids[0][0], ids[0][1], n, steady(repeats), adapter_loop(port.decr, n),
                          lambda _t: raw.redis_decr(client, key, n)),
        lambda: pair_row(sec, ids[1][0], ids[1][1], m, steady(repeats), adapter_pipelined(m, 100),
                          lambda _t: raw.redis_decr_pipelined(client, key, m, 100)),
        lambda: pair_row(sec, ids[2][0], ids[2][1], n, steady(repeats), adapter_loop(port.check_and_decr, n),
                          lambda _t: raw.redis_check_and_decr(client, key, n)),
    ]
    try:
        port.set(STOCK, 10**12)
        for (id, label), body in zip(ids, bodies):
            guard(sec, id, label, body, recover)
    finally:
        for cleanup in (port.clear, port.close, client.close):
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - a server that went away cannot be cleaned up
                pass
