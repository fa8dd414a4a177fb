"""The ``tracing`` scenario (lesson 09, curriculum C5/C6): correlation ids, spans, swimlanes,
JSON Lines export, and the schema gate sending drifted payloads to the dead-letter queue."""

from __future__ import annotations

import hashlib
import io
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pydantic  # noqa: E402
import pytest  # noqa: E402

from simulator.history import History, Op  # noqa: E402
from simulator.scenarios.tracing import (TracingConfig, injected_invalid, invalid_flow,  # noqa: E402
                                         run_tracing)
from simulator.tracing import (correlation_report, export_jsonl, lanes, load_jsonl,  # noqa: E402
                               otlp_json, read_jsonl, spans, swimlanes, trace, trace_id)

SMALL = dict(submissions=400, stock=120, arrival_rate=300.0, invalid_fraction=0.1)


# --------------------------------------------------------------------------- hand-made histories

class _Recorder:
    """A History with a hand-set clock: ``rec(t, type, f, process, value, msg, corr)``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.history = History(lambda: self.now, keep=None)

    def __call__(self, t: float, type_: str, f: str, process: str, value=None,
                 msg: str | None = "m1", corr: str | None = "c1") -> Op:
        self.now = t
        return self.history.record(type_, f, process, value, msg_id=msg, corr_id=corr)

    @property
    def ops(self) -> list[Op]:
        return self.history.ops


def _granted_path(rec: _Recorder, msg: str = "m1", corr: str = "c1", t0: float = 0.0,
                  retry: bool = False) -> None:
    """One submission through publish, queue, consumer, Redis, DB, gateway and ack."""
    rec(t0, "invoke", "submit", "client", {"user": "u1"}, msg, corr)
    rec(t0 + 0.001, "invoke", "enqueue", "server-1", None, msg, corr)
    if retry:
        rec(t0 + 0.002, "info", "enqueue", "server-1", {"error": "broker is down"}, msg, corr)
        rec(t0 + 0.003, "invoke", "enqueue", "server-1", None, msg, corr)
    rec(t0 + 0.004, "ok", "enqueue", "server-1", None, msg, corr)
    rec(t0 + 0.005, "ok", "submit", "client", {"status": 200}, msg, corr)
    rec(t0 + 0.010, "ok", "deliver", "consumer-2", {"redelivered": False, "ack": "manual"}, msg, corr)
    rec(t0 + 0.011, "ok", "stock", "consumer-2", {"left": 4}, msg, corr)
    rec(t0 + 0.014, "ok", "grant", "consumer-2", {"user": "u1"}, msg, corr)
    rec(t0 + 0.044, "ok", "send", "consumer-2", None, msg, corr)
    rec(t0 + 0.045, "ok", "ack", "consumer-2", None, msg, corr)
    rec(t0 + 0.045, "ok", "dequeue", "consumer-2", {"outcome": "granted"}, msg, corr)


def _by_name(span_list: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in span_list:
        out.setdefault(s["name"], []).append(s)
    return out


def test_spans_pair_each_invoke_with_its_completion_and_nest_under_the_consumer():
    rec = _Recorder()
    _granted_path(rec)
    rec(0.0, "invoke", "submit", "client", {"user": "u9"}, "m9", "c9")  # another trace: ignored
    got = spans(rec.ops, "c1")
    named = _by_name(got)
    (root,), (publish,), (process,) = named["submit"], named["publish gift"], named["process gift"]
    assert (root["start_time_unix_nano"], root["end_time_unix_nano"]) == (0, 5_000_000)
    assert root["parent_span_id"] is None and root["kind"] == "CLIENT"
    assert root["attributes"]["http.response.status_code"] == 200
    assert (publish["start_time_unix_nano"], publish["end_time_unix_nano"]) == (1_000_000, 4_000_000)
    assert publish["kind"] == "PRODUCER" and publish["parent_span_id"] == root["span_id"]
    assert process["kind"] == "CONSUMER" and process["parent_span_id"] == publish["span_id"]
    assert (process["start_time_unix_nano"], process["end_time_unix_nano"]) == (10_000_000, 45_000_000)
    for name in ("stock", "grant", "send", "ack gift"):
        (child,) = named[name]
        assert child["parent_span_id"] == process["span_id"], name
        assert process["start_time_unix_nano"] <= child["start_time_unix_nano"]
        assert child["end_time_unix_nano"] <= process["end_time_unix_nano"]
    # each consumer step starts where the previous one ended
    assert named["grant"][0]["start_time_unix_nano"] == named["stock"][0]["end_time_unix_nano"]
    assert named["grant"][0]["attributes"]["mqlab.component"] == "db"
    assert named["stock"][0]["attributes"]["mqlab.component"] == "redis"
    (queued,) = named["queued gift.submissions"]
    # the broker holds the message from the publish on: it may deliver before it confirms
    assert (queued["start_time_unix_nano"], queued["end_time_unix_nano"]) == (1_000_000, 10_000_000)
    assert {s["trace_id"] for s in got} == {trace_id("c1")}
    assert len({s["span_id"] for s in got}) == len(got)


def test_span_attributes_follow_the_messaging_conventions():
    rec = _Recorder()
    _granted_path(rec)
    named = _by_name(spans(rec.ops, "c1"))
    publish = named["publish gift"][0]["attributes"]
    assert publish["messaging.system"] == "rabbitmq"
    assert publish["messaging.operation.type"] == "send"
    assert publish["messaging.destination.name"] == "gift"
    assert publish["messaging.rabbitmq.destination.routing_key"] == "survey.submitted"
    assert publish["messaging.message.id"] == "m1"
    assert publish["messaging.message.conversation_id"] == "c1"
    assert named["process gift"][0]["attributes"]["messaging.operation.type"] == "process"
    assert named["ack gift"][0]["attributes"]["messaging.operation.type"] == "settle"


def test_a_publish_retry_gives_two_spans_and_the_consumer_hangs_under_the_confirmed_one():
    rec = _Recorder()
    _granted_path(rec, retry=True)
    named = _by_name(spans(rec.ops, "c1"))
    first, second = named["publish gift"]
    assert first["status"]["code"] == "ERROR" and first["end_time_unix_nano"] == 2_000_000
    assert first["attributes"]["error.type"] == "broker is down"
    assert second["status"]["code"] == "OK" and second["start_time_unix_nano"] == 3_000_000
    assert named["process gift"][0]["parent_span_id"] == second["span_id"]


def test_an_unanswered_invoke_is_marked_incomplete():
    rec = _Recorder()
    rec(0.0, "invoke", "submit", "client", {"user": "u1"})
    rec(0.001, "invoke", "enqueue", "server-1")
    named = _by_name(spans(rec.ops, "c1"))
    assert named["publish gift"][0]["attributes"].get("mqlab.incomplete") is True
    assert named["submit"][0]["attributes"].get("mqlab.incomplete") is True


def test_trace_is_time_ordered_and_only_that_correlation_id():
    rec = _Recorder()
    _granted_path(rec, "m2", "c2", t0=0.002)
    _granted_path(rec, "m1", "c1", t0=0.0)
    got = trace(rec.ops, "c1")
    assert {op.corr_id for op in got} == {"c1"} and len(got) == 10
    assert [op.time for op in got] == sorted(op.time for op in got)


def test_trace_ids_are_stable_and_namespaced():
    assert trace_id("c1") == trace_id("c1")
    assert len(trace_id("c1")) == 32 and int(trace_id("c1"), 16)
    assert trace_id("c1") != trace_id("c2")
    assert trace_id("c1", "seed-7") != trace_id("c1", "seed-8")
    rec = _Recorder()
    _granted_path(rec)
    assert spans(rec.ops, "c1") == spans(list(rec.ops), "c1")
    assert all(len(s["span_id"]) == 16 for s in spans(rec.ops, "c1"))


def test_swimlanes_one_lane_per_component_in_path_order():
    rec = _Recorder()
    _granted_path(rec)
    bars = swimlanes(rec.ops, "c1")
    assert lanes(bars) == ["client", "server-1", "broker", "consumer-2", "redis", "db", "gateway"]
    assert all(start <= end for _, start, end, _ in bars)
    assert ("consumer-2", 0.01, 0.045, "process (granted)") in bars


def test_otlp_json_has_integer_kinds_hex_ids_and_parents():
    rec = _Recorder()
    _granted_path(rec)
    doc = otlp_json(spans(rec.ops, "c1"))
    flat = [s for r in doc["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    assert len(flat) == len(spans(rec.ops, "c1"))
    assert {s["kind"] for s in flat} <= {1, 3, 4, 5}
    assert sum("parentSpanId" not in s for s in flat) == 1  # only the submit is a root
    assert all(isinstance(s["startTimeUnixNano"], str) for s in flat)
    json.dumps(doc)


def test_jsonl_export_round_trips_byte_identically(tmp_path):
    rec = _Recorder()
    _granted_path(rec)
    rec(0.05, "info", "crash", "consumer-2", None, None, None)
    first = io.StringIO()
    assert export_jsonl(rec.ops, first) == len(rec.ops)
    path = tmp_path / "history.jsonl"
    export_jsonl(read_jsonl(first.getvalue().splitlines()), path)
    assert path.read_bytes() == first.getvalue().encode()
    assert load_jsonl(path) == rec.ops
    # the same bytes the history hashed as it recorded
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec.history.sha256()


def test_correlation_invariant_fails_on_a_grant_nobody_submitted():
    rec = _Recorder()
    _granted_path(rec)
    assert correlation_report(rec.ops).ok
    rec(0.1, "ok", "grant", "consumer-1", {"user": "u7"}, "m7", "c7")
    report = correlation_report(rec.ops)
    assert not report.ok
    assert report.orphan_grants == ["c7"] and report.unknown_out == ["c7"]


def test_correlation_invariant_fails_when_a_hop_drops_the_id():
    rec = _Recorder()
    _granted_path(rec)
    rec(0.1, "ok", "send", "consumer-2", None, "m1", "c-other")
    report = correlation_report(rec.ops)
    assert not report.ok and report.mismatched == ["m1"]


def test_correlation_invariant_fails_on_a_grant_claimed_by_two_submissions():
    rec = _Recorder()
    _granted_path(rec, "m1", "c1")
    rec(0.2, "invoke", "submit", "client", {"user": "u2"}, "m2", "c1")
    report = correlation_report(rec.ops)
    assert not report.ok and report.ambiguous_grants == ["c1"]


def test_invalid_flow_counts_a_drifted_payload_that_reached_the_handler():
    rec = _Recorder()
    _granted_path(rec, "m1", "c1")
    rec(0.1, "ok", "deliver", "consumer-1", {"redelivered": False}, "m2", "c2")
    rec(0.1, "ok", "dequeue", "consumer-1", {"outcome": "invalid", "error": "schema_version"}, "m2", "c2")
    rec(9.0, "info", "dead-letter", "drain", None, "m2", "c2")
    assert invalid_flow(rec.ops, {"m2"}) == {"injected": 1, "rejected": 1, "rejected_ops": 1,
                                             "dead_lettered": 1, "reached_handler": 0,
                                             "valid_rejected": 0, "not_rejected": 0}
    counted = invalid_flow(rec.ops, {"m1", "m2"})  # m1 was granted: had it been invalid...
    assert counted["reached_handler"] == 1 and counted["not_rejected"] == 1


def test_injected_invalid_replays_the_payload_stream():
    drawn = injected_invalid(7, 2000, 0.05)
    assert drawn == injected_invalid(7, 2000, 0.05)
    assert 60 <= len(drawn) <= 140 and drawn != injected_invalid(8, 2000, 0.05)
    assert injected_invalid(7, 2000, 0.0) == []


def test_config_is_validated():
    with pytest.raises(pydantic.ValidationError, match="arrival number"):
        TracingConfig(submissions=10, pick=11)
    with pytest.raises(pydantic.ValidationError):
        TracingConfig(schema_drift="missing-field")  # the world cannot drop a field
    with pytest.raises(pydantic.ValidationError, match="invalid_fraction"):
        TracingConfig(pick="first-invalid", invalid_fraction=0.0)
    assert TracingConfig.model_validate({"pick": "3"}).pick == 3  # the CLI passes strings


# --------------------------------------------------------------------------- seeded runs

@pytest.fixture(scope="module")
def run():
    return run_tracing(TracingConfig(seed=7, **SMALL))


@pytest.fixture(scope="module")
def invalid_run():
    return run_tracing(TracingConfig(seed=7, pick="first-invalid", **SMALL))


def test_first_granted_trace_reaches_every_component(run):
    assert run.metrics["outcome"] == "granted"
    assert {op.corr_id for op in run.trace} == {run.corr_id}
    fs = {op.f for op in run.trace}
    assert {"submit", "enqueue", "deliver", "grant", "dequeue"} <= fs
    assert {"client", "broker", "redis", "db", "gateway"} <= set(lanes(run.swimlanes))
    assert run.metrics["hops"] >= 6 and run.metrics["trace_ms"] > 0
    roots = [s for s in run.spans if s["parent_span_id"] is None]
    assert len(roots) == 1 and roots[0]["name"] == "submit"
    ids = {s["span_id"] for s in run.spans}
    assert all(s["parent_span_id"] in ids for s in run.spans if s["parent_span_id"])


def test_correlation_invariant_holds_on_a_seeded_run(run):
    assert run.metrics["correlation_ok"] is True
    assert run.correlation.grants == run.metrics["vouchers_granted"] > 0
    assert run.correlation.submitted == SMALL["submissions"]


def test_invalid_payloads_never_reach_the_handler_and_all_are_rejected(run):
    inv = run.invalid
    assert inv["injected"] > 0
    assert inv["rejected"] == inv["injected"] == inv["dead_lettered"]
    assert inv["reached_handler"] == 0 and inv["valid_rejected"] == 0
    assert run.metrics["invalid_reached_handler"] == 0
    assert run.flash.checker.valid


def test_an_invalid_payload_trace_ends_in_the_dead_letter_queue(invalid_run):
    assert invalid_run.metrics["outcome"] == "invalid"
    fs = [op.f for op in invalid_run.trace]
    assert "grant" not in fs and "stock" not in fs and fs[-1] == "dead-letter"
    process = [s for s in invalid_run.spans if s["kind"] == "CONSUMER"]
    assert process and all(s["status"]["code"] == "ERROR" for s in process)
    assert process[0]["attributes"]["error.type"] == "invalid_payload"


def test_seeded_runs_repeat_exactly(run):
    again = run_tracing(TracingConfig(seed=7, **SMALL))
    assert again.to_dict() == run.to_dict()
    assert {s["trace_id"] for s in again.spans} == {s["trace_id"] for s in run.spans}
    json.dumps(run.to_dict())


def test_exported_history_hashes_to_the_run_sha(run, tmp_path):
    paths = run.export(tmp_path)
    assert hashlib.sha256(paths["history"].read_bytes()).hexdigest() == run.flash.history_sha256
    # the file holds the canonical form (times to 9 decimals), so compare canonical lines
    assert [op.to_json() for op in load_jsonl(paths["trace"])] == [op.to_json() for op in run.trace]
    assert json.loads(paths["spans"].read_text())["resourceSpans"]


def test_to_dict_has_the_report_fields(run):
    d = run.to_dict()
    assert d["scenario"] == "tracing" and d["seed"] == 7
    for key in ("hops", "trace_ms", "invalid_injected", "invalid_rejected",
                "invalid_reached_handler", "correlation_ok"):
        assert key in d["metrics"], key
    assert d["trace"] and d["spans"]
    assert run.corr_id in run.report()


def test_swimlane_plot_has_one_tick_per_component(run):
    from simulator.plots_tracing import plot_invalid_flow, plot_swimlanes, plot_tracing

    fig = plot_swimlanes(run)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == lanes(run.swimlanes) and len(ticks) == len(set(ticks))
    plt.close(fig)
    fig = plot_invalid_flow(run)
    assert len(fig.axes[0].patches) == 4
    plt.close(fig)
    plt.close(plot_tracing(run))
