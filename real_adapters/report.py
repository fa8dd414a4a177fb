"""Human-readable reports of real runs, conformance and calibration (the ``--json`` output
is the same data as one object)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_COUNTS = ("lost", "duplicated", "unexpected", "oversold", "double_granted", "out_of_order", "ghost", "orphan")


def _ms(summary: dict[str, Any], key: str, scale: float = 1.0, unit: str = "ms") -> str:
    value = summary.get(key)
    return "-" if value is None else f"{value * scale:.1f} {unit}"


def real_report(doc: dict[str, Any]) -> str:
    cfg, m, c, a, run = doc["config"], doc["metrics"], doc["checker"], doc["audit"], doc["run"]
    lines = [
        f"flash-sale (real)  seed={cfg['seed']}  workers={m['workers']}  stock={cfg['stock']} "
        f"({cfg['stock_strategy']})  ack={cfg['ack']}  dedupe={cfg['dedupe']}  write={cfg['write_pattern']}"
        f"  db={run['database']}",
        f"  submissions        {m['submissions']}  (accepted {m['accepted']}, refused {m['refused']})",
        f"  vouchers granted   {m['vouchers_granted']}  (expected {m['expected_vouchers']})",
        f"  response           p50 {_ms(m['response_ms'], 'p50')}   p99 {_ms(m['response_ms'], 'p99')}",
        f"  time to voucher    p50 {_ms(m['time_to_voucher_s'], 'p50', unit='s')}   "
        f"p99 {_ms(m['time_to_voucher_s'], 'p99', unit='s')}",
        f"  throughput         {m['throughput_per_s']} msg/s   redeliveries {m['redeliveries']}   "
        f"peak queue {m['peak_queue_depth']}   wall {m['wall_seconds']:.1f} s",
        "  checker            " + ("VALID" if c["valid"] else "INVALID") + "  "
        + "  ".join(f"{k}={c[k]}" for k in _COUNTS),
        f"  audit              ledger {a['ledger_rows']}  stock left {a['stock_left']} ({a['stock_counter']})"
        f"  offered {a['offered_stock']}  reconciled={a['reconciled']}  leaked={a['stock_leaked']}"
        f"  drained {a['drained_at_end']}  queue after {a['queue_ready_after_drain']}",
    ]
    for fault in doc["faults"]:
        extra = {k: v for k, v in fault.items() if k not in ("fault", "kind", "target")}
        lines.append(f"  fault              {fault['fault']}  {extra}")
    for example in c["examples"][:5]:
        lines.append(f"    {example['kind']}: {example['chain']}")
    for error in run["errors"]:
        lines.append(f"  note               {error}")
    lines.append(f"  history sha256     {doc['history_sha256']}")
    lines.append(f"  run directory      {run['run_dir']}")
    if "conformance" in doc:
        lines.append(conformance_report(doc["conformance"]))
    return "\n".join(lines)


def conformance_report(conf: dict[str, Any]) -> str:
    lines = [f"  sim vs real        (model {'calibrated from ' + conf['profile'] if conf['profile'] else 'defaults'})",
             f"    {'figure':<22}{'real':>12}{'model':>12}  verdict"]
    for row in conf["rows"]:
        lines.append(f"    {row['figure']:<22}{_fmt(row['real']):>12}{_fmt(row['model']):>12}  {row['verdict']}")
    for note in conf["notes"]:
        lines.append(f"    note: {note}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def prediction_report(rows: list[dict[str, Any]]) -> str:
    lines = [f"  {'workers':>7}{'predicted msg/s':>17}{'measured msg/s':>16}{'error':>9}"
             f"{'no host CPU':>13}{'error':>9}"]
    for row in rows:
        err, plain_err = row.get("error_pct"), row.get("error_no_cpu_pct")
        lines.append(f"  {row['workers']:>7}{_fmt(row['predicted']):>17}{_fmt(row.get('measured')):>16}"
                     f"{'' if err is None else f'{err:+.1f}%':>9}{_fmt(row.get('predicted_no_cpu')):>13}"
                     f"{'' if plain_err is None else f'{plain_err:+.1f}%':>9}")
    return "\n".join(lines)


def calibration_report(report: dict[str, Any], out: Path | None) -> str:
    p = report["profile"]
    mapped = report["calibrated"]
    lines = ["calibration (real services, gateway stand-in "
             f"{p['gateway_latency_ms']:g} ms)",
             "  measured service times (ms, mean):"]
    for name, summary in sorted(p["ops_ms"].items()):
        lines.append(f"    {name:<26}{summary['mean']:>9.3f}   (n={summary['count']})")
    lines.append(f"  per message: cycle {p['cycle_ms']:.2f} ms at 1 worker "
                 f"(unattributed {p['unattributed_ms']:.2f} ms, needing a CPU {p['cpu_bound_ms']:.2f} ms)")
    host = p.get("host_cpu")
    if host:
        lines.append(f"  host: {host['cpus']} CPUs, {host['demand_ms_per_msg']:.2f} ms CPU per message "
                     f"(workers + local services), other work using {host['background_cpus']:.2f} CPUs")
    lines.append("  mapped onto the model: " + ", ".join(f"{k}={v:.4g}" for k, v in mapped.items()))
    lines.append(prediction_report(report["rows"]))
    if out is not None:
        lines.append(f"  profile written to {out}")
    return "\n".join(lines)
