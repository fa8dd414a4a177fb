"""Worker processes, the runner and the ``mqlab worker`` / ``mqlab real`` commands.

The real-service tests start real OS processes against RabbitMQ, Redis and PostgreSQL on
loopback; each keeps to a few hundred submissions.  The rest (fault specs, history merge,
bad options) needs no service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from real_adapters import journal
from real_adapters.faults import parse_fault
from real_adapters.settings import Settings
from simulator.errors import InputError
from simulator.history import History, Op

MQLAB = [sys.executable, "-m", "simulator.cli"]
SHAPE = {"scenario", "seed", "config", "metrics", "checker", "history_sha256"}


def _env(**urls: str) -> dict[str, str]:
    env = dict(os.environ, MPLBACKEND="Agg")
    env.update(urls)
    return env


# --------------------------------------------------------------------------- no services needed

@pytest.mark.parametrize("text,expect", [
    ("kill:consumer-2@40%", {"kind": "kill", "target": "consumer-2", "at_share": 0.4}),
    ("kill:consumer-1@1.5s+2/sending", {"at_s": 1.5, "seconds": 2.0, "sending": True}),
    ("stop:consumer-1@30%+1.5", {"kind": "stop", "seconds": 1.5}),
    ("broker-restart@25%+0.5", {"kind": "broker-restart", "target": "broker", "seconds": 0.5}),
    ("point:relay@relay:after-publish#20", {"kind": "point", "point": "relay:after-publish", "nth": 20}),
])
def test_fault_specs_parse(text, expect):
    spec = parse_fault(text)
    assert {k: getattr(spec, k) for k in expect} == expect


@pytest.mark.parametrize("text", ["kill:consumer-0@1s", "kill:toaster@1s", "kill:consumer-1@soon",
                                  "stop:consumer-1@1s", "point:consumer-1@relay:after-publish",
                                  "point:relay@relay:after-publish#0", "broker-restart", "explode:relay@1s",
                                  "kill:consumer-1@150%", "stop:relay@1s+1/sending"])
def test_bad_fault_specs_are_input_errors(text):
    with pytest.raises(InputError, match="--fault"):
        parse_fault(text)


def test_histories_merge_by_time_keeping_each_file_in_order(tmp_path):
    clock = iter([1.0, 3.0, 3.0, 5.0])
    a = History(lambda: next(clock), sinks=[journal.JsonlSink(tmp_path / "a.1.jsonl")])
    for f in ("deliver", "grant", "ack", "dequeue"):
        a.record("ok", f, "consumer-1", msg_id="m1")
    b = History(lambda: 3.0, sinks=[journal.JsonlSink(tmp_path / "b.2.jsonl")])
    b.record("ok", "stock-init", "world", {"stock": 1})
    with open(tmp_path / "b.2.jsonl", "a") as fh:
        fh.write('{"index": 9, "time": 9.0, "type": "ok"')  # a torn line from a kill -9: skipped
    ops = journal.merge(tmp_path)
    assert [op.index for op in ops] == list(range(5))
    assert [op.time for op in ops] == sorted(op.time for op in ops)
    assert [op.f for op in ops if op.process == "consumer-1"] == ["deliver", "grant", "ack", "dequeue"]
    assert journal.sha256(ops) == journal.sha256(Op.from_dict(op.to_dict()) for op in ops)


def test_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "w.jsonl"
    tail = journal.Tail(path)
    assert tail.new_ops() == []
    path.write_text('{"f": "a"}\n{"f": "b"')
    assert [o["f"] for o in tail.new_ops()] == ["a"]
    with open(path, "a") as fh:
        fh.write('}\n')
    assert [o["f"] for o in tail.new_ops()] == ["b"] and tail.last == {"f": "b"}


BAD = [
    (["real", "flash-sale", "--fault", "kill:consumer-9@1s", "--consumers", "2"], "--fault"),
    (["real", "flash-sale", "--fault", "melt:relay@1s"], "--fault"),
    (["real", "flash-sale", "--consumers", "0"], "consumers"),
    (["real", "flash-sale", "--ack", "maybe"], "ack"),
    (["real", "flash-sale", "--fault", "point:relay@relay:after-publish"], "outbox"),
    (["real", "flash-sale", "--compare", "--profile", "/nonexistent/profile.json"], "--profile"),
    (["real", "flash-sale", "--max-seconds", "0"], "--max-seconds"),
    (["real", "flash-sale", "--fault", "point:consumer-1@consumer:after-stock",
      "--fault", "point:consumer-1@consumer:after-commit"], "one crash point"),
    (["real", "calibrate", "--workers", "1,x"], "--workers"),
    (["real", "predict"], "--profile"),
    (["worker", "consumer"], "--run-dir"),
    (["worker", "consumer", "--run-dir", "/tmp/x", "--crash-point", "nowhere"], "--crash-point"),
    (["worker", "consumer", "--run-dir", "/tmp/x", "--namespace", "Bad-Name"], "namespace"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_options_are_one_line_and_exit_two(argv, needle):
    # the database URL carries a password, which must not leak into the error line
    proc = subprocess.run([*MQLAB, *argv], capture_output=True, text=True, timeout=60,
                          env=_env(MQLAB_DATABASE_URL="postgresql://u:s3cret@127.0.0.1:1/x"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mqlab: error:") and needle in lines[0], proc.stderr
    assert "s3cret" not in proc.stderr and proc.stdout == ""


# --------------------------------------------------------------------------- real services

@pytest.fixture
def urls(amqp_url: str, redis_url: str, postgres_url: str) -> dict[str, str]:
    return {"MQLAB_AMQP_URL": amqp_url, "MQLAB_REDIS_URL": redis_url, "MQLAB_DATABASE_URL": postgres_url}


@pytest.mark.real
def test_mqlab_real_prints_the_run_shape_and_keeps_every_promise(urls, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [*MQLAB, "real", "flash-sale", "--submissions", "150", "--stock", "100", "--workers", "2",
         "--gateway-latency-ms", "5", "--arrival-profile", "constant", "--arrival-rate", "500",
         "--run-dir", str(run_dir), "--json"],
        capture_output=True, text=True, timeout=120, env=_env(**urls))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert SHAPE <= doc.keys() and doc["scenario"] == "flash-sale" and doc["world"] == "real"
    for key in ("response_ms", "time_to_voucher_s"):
        assert {"p50", "p99"} <= doc["metrics"][key].keys()
    c, a, m = doc["checker"], doc["audit"], doc["metrics"]
    assert c["valid"] and (c["lost"], c["double_granted"], c["oversold"]) == (0, 0, 0)
    assert c["promised"] == c["dequeued"] == 150 and c["granted"] == m["vouchers_granted"] == 100
    assert (a["ledger_rows"], a["stock_left"], a["reconciled"]) == (100, 0, True)
    assert a["queue_ready_after_drain"] == 0 and m["throughput_per_s"] > 0
    # one history file per process, merged by time into history.jsonl whose digest is reported
    files = {p.name.split(".")[0] for p in journal.history_files(run_dir)}
    assert files == {"runner", "loadgen", "consumer-1", "consumer-2"}
    merged = journal.merge(run_dir)
    assert journal.sha256(merged) == doc["history_sha256"]
    assert {op.process for op in merged if op.f == "dequeue"} == {"consumer-1", "consumer-2"}
    # the guest password is masked wherever a URL is shown
    assert "guest:guest" not in proc.stdout and "guest:***" in doc["run"]["services"]["amqp"]


@pytest.mark.real
def test_a_worker_process_consumes_what_is_already_queued_and_stops_on_sigterm(urls, tmp_path, namespace):
    """A worker started by hand (as on another host) against the same URLs."""
    from real_adapters.bootstrap import build_ports, close_ports, wall_history
    from simulator.flow import QUEUE, ROUTING_KEY, STOCK_KEY, Policy, accept
    from simulator.messages import Message, submission_body
    from simulator.ports import drive

    settings = Settings(amqp_url=urls["MQLAB_AMQP_URL"], redis_url=urls["MQLAB_REDIS_URL"],
                        database_url=urls["MQLAB_DATABASE_URL"])
    api = build_ports(settings, history=wall_history(keep=0), process_name="api-test",
                      namespace=namespace, declare=True)
    worker = None
    try:
        api.redis.set(STOCK_KEY, 10)
        for i in range(20):
            msg = Message(f"w{i}", f"c{i}", ROUTING_KEY, submission_body(f"w{i}", f"user-{i}"))
            assert drive(accept(api, Policy(), msg, "api")) == 200
        worker = subprocess.Popen([*MQLAB, "worker", "consumer", "--name", "consumer-7", "--run-dir",
                                   str(tmp_path), "--namespace", namespace, "--max-seconds", "60"],
                                  env=_env(**urls), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and api.db.processed_count() < 20:
            time.sleep(0.1)
        assert api.db.processed_count() == 20 and api.db.ledger_count() == 10
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
        ops = journal.merge(tmp_path)
        outcomes = [op.value["outcome"] for op in ops if op.f == "dequeue"]
        assert sorted(outcomes) == ["granted"] * 10 + ["sold_out"] * 10
        assert {op.process for op in ops} == {"consumer-7"}
        timings = journal.read_timings(tmp_path)
        (stem, ops_ms), = timings.items()
        assert stem.startswith("consumer-7.") and ops_ms["tx.commit"]["count"] >= 9
        assert api.broker.queue_depth(QUEUE) == 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        api.broker.delete_topology()
        api.redis.clear()
        api.db.drop()
        close_ports(api)
