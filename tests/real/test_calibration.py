"""Calibration: a measured profile mapped onto the model, and the calibrated model's throughput
at 1, 2 and 4 workers against the real services' (a 20 ms gateway stand-in, so the worker
count matters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from real_adapters.calibrate import (KIND, base_config, calibrate, calibrated_config, check_profile,
                                     model_rate, predict)
from real_adapters.settings import Settings
from simulator.errors import InputError

TOLERANCE_PCT = 20.0


def profile(**overrides) -> dict:
    """A profile as ``profile_from_run`` writes it, with round numbers."""
    ops = {"gateway.send": 20.0, "db.login": 0.5, "tx.insert_processed": 0.7, "tx.insert_ledger": 0.9,
           "tx.commit": 2.0, "loadgen:broker.publish": 3.0, "consumer.handle": 27.0}
    doc = {"kind": KIND, "version": 1, "gateway_latency_ms": 20.0, "cycle_ms": 28.0,
           "throughput_per_s": 1000 / 28.0, "cpu_bound_ms": 5.0, "host_cpu": None,
           "ops_ms": {k: {"count": 100, "mean": v, "p50": v, "p99": v} for k, v in ops.items()},
           "measured_throughput": {}}
    return {**doc, **overrides}


def test_the_profile_maps_onto_the_model_fields():
    cfg = calibrated_config(profile(), base_config(1, 400, 20.0))
    assert cfg.gateway_latency_ms == 20.0
    assert cfg.db_query_ms == pytest.approx(0.7)  # the mean of login and the two inserts
    assert cfg.fsync_interval_s == pytest.approx(0.006)  # twice the mean confirm wait
    assert 0 < cfg.handler_ms < 28.0 - 20.0  # the rest of the cycle, beyond what the model charges
    # the residual is what makes the model's 1-worker cycle the measured one
    assert 1000.0 / model_rate(cfg) == pytest.approx(28.0, rel=0.03)


def test_the_host_cpu_term_slows_many_workers_only():
    busy = profile(host_cpu={"demand_ms_per_msg": 4.0, "cpus": 2, "background_cpus": 1.0, "busy": 0.7})
    plain, loaded = predict(profile(), (1, 4)), predict(busy, (1, 4))
    assert plain[0]["predicted"] == pytest.approx(loaded[0]["predicted"], rel=0.03)  # same at 1
    assert loaded[1]["predicted"] < 0.95 * plain[1]["predicted"]  # our own load stretches the CPU part
    assert plain[1]["predicted"] == pytest.approx(4 * plain[0]["predicted"], rel=0.05)  # no CPU: linear


@pytest.mark.parametrize("junk", [{}, {"kind": "other"}, profile(cycle_ms=0), profile(ops_ms={})])
def test_a_bad_profile_is_an_input_error(junk):
    with pytest.raises(InputError, match="--profile"):
        check_profile(junk, "p.json")


def test_mqlab_real_predict_reads_a_profile(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile(measured_throughput={"2": 70.0})))
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "real", "predict", "--profile", str(path),
                           "--workers", "1,2", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["predictions"]
    assert [r["workers"] for r in rows] == [1, 2]
    assert rows[1]["measured"] == 70.0 and rows[1]["error_pct"] is not None


@pytest.mark.real
def test_calibrated_prediction_is_within_20_percent_at_1_2_and_4_workers(amqp_url, redis_url, postgres_url,
                                                                        tmp_path):
    settings = Settings(amqp_url=amqp_url, redis_url=redis_url, database_url=postgres_url)
    attempts = []
    # A shared machine's other load moves single measurements by 10-15%: one more measurement
    # (never more) before calling the prediction wrong.
    for _ in range(2):
        report = calibrate(settings, workers=(1, 2, 4), per_worker=80, gateway_latency_ms=20.0)
        rows = report["rows"]
        attempts.append([(r["workers"], r["predicted"], r["measured"], r["error_pct"]) for r in rows])
        (tmp_path / f"calibration-{len(attempts)}.json").write_text(json.dumps(report, indent=2))
        if all(abs(r["error_pct"]) <= TOLERANCE_PCT for r in rows):
            break
    print("\ncalibration (workers, predicted msg/s, measured msg/s, error %):", attempts, file=sys.stderr)
    assert all(abs(e) <= TOLERANCE_PCT for *_, e in attempts[-1]), attempts
    # the worker count matters: a 20 ms gateway call makes 4 workers much faster than 1
    measured = {w: m for w, _, m, _ in attempts[-1]}
    assert measured[4] > 2.5 * measured[1]
