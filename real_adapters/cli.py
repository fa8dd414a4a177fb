"""The ``worker`` and ``real`` commands of ``mqlab`` (hooked in by ``simulator.cli``).

    mqlab worker consumer|relay|loadgen --name N --run-dir DIR [--namespace NS] [--config F]
    mqlab real flash-sale [scenario options] [--fault SPEC]... [--compare [--profile F]] [--json]
    mqlab real calibrate [--workers 1,2,4] [--per-worker N] [--profile-out F] [--json]
    mqlab real predict --profile F [--workers 1,2,4] [--json]

Importing this module imports no client library: ``mqlab run`` stays as fast as before.
Every option is checked before anything connects; a bad one raises ``InputError`` (one line,
exit 2, printed by ``simulator.cli``).  Service URLs come from the environment
(``MQLAB_AMQP_URL`` ...) or ``--database-url``; any URL printed is masked.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from simulator.errors import InputError

# FlashSaleConfig fields the real world honours (the rest describe the model's machinery)
REAL_FIELDS = ("seed", "submissions", "arrival_profile", "arrival_rate", "spike_decay_s", "piecewise",
               "invalid_fraction", "stock", "safety_stock", "consumers", "prefetch", "ack", "confirms",
               "mandatory", "publish_retries", "persistent", "stock_strategy", "dedupe",
               "write_pattern", "gateway_latency_ms", "gateway_failure", "reconnect_s")
REAL_TARGETS = ("flash-sale", "calibrate", "predict")


def add_commands(subparsers: Any, parser_class: type) -> None:
    worker = subparsers.add_parser("worker", help="run one worker process (consumer, relay or loadgen)")
    worker.add_argument("role", choices=("consumer", "relay", "loadgen"), metavar="consumer|relay|loadgen")
    worker.add_argument("--name", default=None, help="process name in the history (default: the role)")
    worker.add_argument("--run-dir", required=True, help="where the history and markers are written")
    worker.add_argument("--namespace", default="", help="prefix of queues, keys and tables")
    worker.add_argument("--config", default=None, help="the scenario as JSON (FlashSaleConfig)")
    worker.add_argument("--crash-point", default=None, metavar="POINT[#N]",
                        help="SIGKILL itself the N-th time the flow reaches POINT")
    worker.add_argument("--idle-exit-s", default="0", help="exit after this long with nothing to do")
    worker.add_argument("--max-seconds", default="600", help="exit after this long in any case")
    worker.add_argument("--heartbeat-s", default=None, help="AMQP heartbeat to ask for")
    worker.add_argument("--start-file", default=None, help="loadgen: begin once this file exists")

    real = subparsers.add_parser("real", help="run on the real RabbitMQ, Redis and SQL database")
    targets = real.add_subparsers(dest="real_target", required=True, parser_class=parser_class)
    sale = targets.add_parser("flash-sale", help="a bounded real experiment: N submissions, K workers")
    _add_real_config(sale)
    sale.add_argument("--fault", dest="fault_specs", action="append", default=None, metavar="SPEC",
                      help="kill:consumer-2@40%%[+RESTART_S][/sending], stop:consumer-1@1s+1.5, "
                           "broker-restart@30%%+1, point:relay@relay:after-publish#20 (repeatable)")
    sale.add_argument("--compare", action="store_true", help="run the model too; report differences")
    _add_common(sale, profile_required=False)
    sale.add_argument("--namespace", default="", help="prefix of queues, keys and tables (default random)")
    sale.add_argument("--run-dir", default=None, help="keep histories and logs here (default a temp dir)")
    sale.add_argument("--keep", action="store_true", help="leave queues, keys and tables behind")
    sale.add_argument("--max-seconds", default="120", help="bound on the whole run")

    cal = targets.add_parser("calibrate", help="measure service times, predict 1/2/4 workers, compare")
    cal.add_argument("--workers", default="1,2,4", help="worker counts to measure, e.g. 1,2,4")
    cal.add_argument("--per-worker", default="120", help="submissions per worker in each run")
    cal.add_argument("--gateway-latency-ms", default="20", help="the voucher gateway stand-in's latency")
    cal.add_argument("--seed", default="7")
    cal.add_argument("--repeats", default="1", help="measured runs per worker count (the median is kept)")
    cal.add_argument("--profile-out", default=None, help="write the measured profile (JSON) here")
    _add_common(cal, profile_required=False, with_profile=False)

    pred = targets.add_parser("predict", help="the calibrated model's throughput at 1/2/4 workers")
    pred.add_argument("--workers", default="1,2,4")
    _add_common(pred, profile_required=True, with_db=False)


def _add_common(p: argparse.ArgumentParser, *, profile_required: bool, with_profile: bool = True,
                with_db: bool = True) -> None:
    if with_profile:
        p.add_argument("--profile", default=None, required=profile_required,
                       help="a measured profile (JSON from `mqlab real calibrate --profile-out`)")
    if with_db:
        p.add_argument("--database-url", default=None, help="overrides MQLAB_DATABASE_URL")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _add_real_config(p: argparse.ArgumentParser) -> None:
    import typing

    from simulator.cli import _base_type, _flag
    from simulator.config import FlashSaleConfig

    for name in REAL_FIELDS:
        info = FlashSaleConfig.model_fields[name]
        base = _base_type(info.annotation)
        flags = [_flag(name)] + (["--workers"] if name == "consumers" else [])
        if base is bool:
            p.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None)
        elif typing.get_origin(base) is typing.Literal:
            p.add_argument(*flags, dest=name, default=None, metavar="|".join(map(str, typing.get_args(base))))
        else:
            p.add_argument(*flags, dest=name, default=None, help=f"(default {info.default})")


# --------------------------------------------------------------------------- parsing values

def _number(flag: str, raw: str, low: float, high: float, *, integer: bool = False) -> Any:
    allowed = f"{'a whole number' if integer else 'a number'} from {low:g} to {high:g}"
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        raise InputError(flag, raw, allowed) from None
    if not low <= value <= high:
        raise InputError(flag, raw, allowed)
    return value


def _workers(raw: str) -> tuple[int, ...]:
    parts = [p.strip() for p in str(raw).split(",") if p.strip()]
    if not parts or len(parts) > 6:
        raise InputError("--workers", raw, "1 to 6 worker counts, e.g. 1,2,4")
    return tuple(_number("--workers", p, 1, 32, integer=True) for p in parts)


def _settings(args: argparse.Namespace) -> Any:
    from .settings import Settings, check_database_url

    settings = Settings.from_env()
    url = getattr(args, "database_url", None)
    if url:
        check_database_url(url, "--database-url")
        settings = Settings(amqp_url=settings.amqp_url, redis_url=settings.redis_url, database_url=url,
                            connect_timeout_s=settings.connect_timeout_s)
    if settings.fake_redis:
        raise InputError("MQLAB_REDIS_URL", "fake://", "a real Redis: worker processes cannot share fakeredis")
    return settings


def real_config(args: argparse.Namespace) -> Any:
    import pydantic

    from simulator.cli import _parse_steps
    from simulator.config import FlashSaleConfig
    from simulator.config_errors import input_error_from

    raw: dict[str, Any] = {}
    for name in REAL_FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            raw[name] = _parse_steps(value) if name == "piecewise" else value
    try:
        return FlashSaleConfig.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc, flags=True) from None


def load_profile(path: str) -> dict[str, Any]:
    from .calibrate import check_profile

    try:
        profile = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError("--profile", path, f"a readable JSON profile ({type(exc).__name__})") from None
    return check_profile(profile, path)


# --------------------------------------------------------------------------- dispatch

def dispatch(args: argparse.Namespace) -> int:
    """Run the command; bad options raise ``InputError`` (exit 2, printed by the caller), a
    service that cannot be reached or a run that cannot finish is one line and exit 1."""
    import sys

    from simulator.errors import ServiceDown

    try:
        if args.command == "worker":
            return _worker(args)
        if args.real_target == "flash-sale":
            return _real(args)
        if args.real_target == "calibrate":
            return _calibrate(args)
        return _predict(args)
    except (ServiceDown, RuntimeError) as exc:  # messages name components and paths, never URLs
        print(f"mqlab: {args.command}: {exc}", file=sys.stderr)
        return 1


def _worker(args: argparse.Namespace) -> int:
    from .faults import parse_crash_point_arg
    from .worker import WorkerOptions, load_config, run

    opts = WorkerOptions(
        role=args.role, name=args.name or args.role, run_dir=Path(args.run_dir), namespace=args.namespace,
        config=load_config(args.config),
        crash_point=parse_crash_point_arg(args.crash_point) if args.crash_point else None,
        idle_exit_s=_number("--idle-exit-s", args.idle_exit_s, 0, 3600),
        max_seconds=_number("--max-seconds", args.max_seconds, 0.1, 86400),
        heartbeat_s=None if args.heartbeat_s is None else _number("--heartbeat-s", args.heartbeat_s, 0, 3600,
                                                                   integer=True),
        start_file=Path(args.start_file) if args.start_file else None)
    return run(opts)


def _real(args: argparse.Namespace) -> int:
    from .faults import parse_fault
    from .runner import RealOptions, run_real

    cfg = real_config(args)
    faults = tuple(parse_fault(text) for text in args.fault_specs or ())
    profile = load_profile(args.profile) if args.profile else None
    if profile is not None and not args.compare:
        raise InputError("--profile", args.profile, "used with --compare (it calibrates the model's side)")
    opts = RealOptions(config=cfg, settings=_settings(args), faults=faults, namespace=args.namespace,
                       run_dir=Path(args.run_dir) if args.run_dir else None, keep=args.keep,
                       max_seconds=_number("--max-seconds", args.max_seconds, 1, 3600))
    result = run_real(opts)
    doc = result.to_dict()
    if args.compare:
        from .conformance import compare_with_model

        doc["conformance"] = compare_with_model(result, profile, args.profile)
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    else:
        from .report import real_report

        print(real_report(doc))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    workers = _workers(args.workers)
    per_worker = _number("--per-worker", args.per_worker, 20, 5000, integer=True)
    latency = _number("--gateway-latency-ms", args.gateway_latency_ms, 0, 1000)
    seed = _number("--seed", args.seed, 0, 2**32 - 1, integer=True)
    out = Path(args.profile_out) if args.profile_out else None
    if out is not None and out.parent.exists() and not out.parent.is_dir():
        raise InputError("--profile-out", str(out), "a path whose folder is a directory")
    repeats = _number("--repeats", args.repeats, 1, 9, integer=True)
    report = calibrate(_settings(args), workers=workers, per_worker=per_worker,
                       gateway_latency_ms=latency, seed=seed, repeats=repeats)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report["profile"], indent=2, sort_keys=True), encoding="utf-8")
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        from .report import calibration_report

        print(calibration_report(report, out))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .calibrate import predict

    profile = load_profile(args.profile)
    rows = predict(profile, _workers(args.workers))
    if args.json:
        print(json.dumps({"profile": args.profile, "predictions": rows}, sort_keys=True))
    else:
        from .report import prediction_report

        print(prediction_report(rows))
    return 0
