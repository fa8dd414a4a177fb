"""The ``mqlab`` command line: output shape and one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from simulator.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scenarios_lists_each_with_a_description(capsys):
    code, out, _ = run_cli(capsys, "scenarios")
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert "flash-sale" in names and "mmc" in names
    assert all(len(line.split()) > 3 for line in out.strip().splitlines())


def test_flash_sale_json_has_the_documented_shape(capsys):
    code, out, _ = run_cli(capsys, "run", "flash-sale", "--submissions", "200", "--stock", "50",
                           "--seed", "7", "--json")
    assert code == 0
    doc = json.loads(out)
    assert {"scenario", "seed", "config", "metrics", "checker", "history_sha256"} <= doc.keys()
    assert doc["scenario"] == "flash-sale" and doc["seed"] == 7
    for key in ("response_ms", "time_to_voucher_s"):
        assert {"p50", "p99"} <= doc["metrics"][key].keys()
    assert doc["metrics"]["vouchers_granted"] == 50
    assert {"lost", "duplicated", "unexpected", "oversold", "double_granted", "out_of_order",
            "ghost", "orphan", "valid"} <= doc["checker"].keys()


def test_human_report_writes_the_plot(capsys, tmp_path):
    target = tmp_path / "plot.png"
    code, out, _ = run_cli(capsys, "run", "flash-sale", "--submissions", "100", "--stock", "30",
                           "--plot", str(target))
    assert code == 0
    assert "checker" in out and "VALID" in out
    assert target.stat().st_size > 1000


def test_mmc_reports_simulated_beside_analytic(capsys):
    code, out, _ = run_cli(capsys, "run", "mmc", "--servers", "2", "--arrival-rate", "1.2",
                           "--service-rate", "1", "--customers", "20000", "--seed", "3", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["metrics"]["mean_wait"] > 0
    assert abs(doc["metrics"]["mean_wait"] - doc["analytic"]["mean_wait"]) / doc["analytic"]["mean_wait"] < 0.15


BAD = [
    (["run", "flash-sale", "--consumers", "0"], "consumers"),
    (["run", "flash-sale", "--consumers", "many"], "consumers"),
    (["run", "flash-sale", "--ack", "sometimes"], "ack"),
    (["run", "flash-sale", "--prefetch", "-1"], "prefetch"),
    (["run", "flash-sale", "--stock", "-5"], "stock"),
    (["run", "flash-sale", "--arrival-rate", "nan"], "arrival-rate"),
    (["run", "flash-sale", "--arrival-rate", "-3"], "arrival-rate"),
    (["run", "flash-sale", "--stock", "10", "--safety-stock", "20"], "safety"),
    (["run", "flash-sale", "--crash", "consumer-2"], "--crash"),
    (["run", "flash-sale", "--crash", "toaster@1"], "target"),
    (["run", "flash-sale", "--crash", "broker@-1"], "at"),
    (["run", "flash-sale", "--stock-strategy", "hope"], "stock-strategy"),
    (["run", "flash-sale", "--redis-persistence", "tape"], "redis-persistence"),
    (["run", "flash-sale", "--ack-loss", "1.5"], "ack-loss"),
    (["run", "flash-sale", "--plot", "out/x.txt"], "--plot"),
    (["run", "flash-sale", "--bogus"], "unrecognized"),
    (["run", "nowhere"], "invalid choice"),
    (["run", "mmc", "--servers", "1", "--arrival-rate", "2", "--service-rate", "1"], "1"),
    (["run", "mmc", "--servers", "0"], "servers"),
    ([], "required"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(a) or "empty" for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_two(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mqlab: error:")
    assert needle in lines[0]
    assert "Traceback" not in err


def test_bad_input_from_a_real_process_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "run", "flash-sale", "--consumers", "x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
