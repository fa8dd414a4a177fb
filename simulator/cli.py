"""``mqlab``: list scenarios and run them.

Options are generated from each scenario's pydantic config, so the CLI and the Python API
validate with the same rules.  Bad input of any kind ends with one line on stderr naming the
field, the value and what is allowed, and exit status 2 - never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import pydantic

from simulator.errors import InputError, UsageError

EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


def _base_type(annotation: Any) -> Any:
    """Unwrap ``X | None`` to ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_fault(text: str) -> dict[str, Any]:
    """``TARGET@AT`` or ``TARGET@AT+RESTART`` (``+never`` keeps it down)."""
    target, sep, rest = text.partition("@")
    if not sep:
        raise InputError("--crash", text, "TARGET@SECONDS[+RESTART_AFTER|+never], e.g. consumer-2@3.0")
    at, plus, restart = rest.partition("+")
    fault: dict[str, Any] = {"target": target, "at": at}
    if plus:
        fault["restart_after"] = None if restart == "never" else restart
    return fault


def _parse_steps(text: str) -> list[tuple[str, str]]:
    steps = []
    for part in text.split(","):
        start, sep, rate = part.partition(":")
        if not sep:
            raise InputError("--piecewise", text, "START_S:RATE[,START_S:RATE...], e.g. 0:100,10:400")
        steps.append((start, rate))
    return steps


def _add_config_options(parser: argparse.ArgumentParser, model: Any) -> None:
    for name, info in model.model_fields.items():
        base = _base_type(info.annotation)
        help_text = info.description or ""
        if name == "faults":
            parser.add_argument("--crash", dest="faults", action="append", type=str, default=None,
                                metavar="TARGET@AT[+RESTART]",
                                help="kill a component at a time (repeatable), e.g. consumer-2@3.0")
        elif base is bool:
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        elif typing.get_origin(base) is typing.Literal:
            choices = [str(c) for c in typing.get_args(base)]
            parser.add_argument(_flag(name), dest=name, default=None, metavar="|".join(choices),
                                help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, default=None, type=str,
                                help=f"{help_text} (default {info.default})".strip())


def build_parser() -> argparse.ArgumentParser:
    from simulator.scenarios.registry import SCENARIOS

    parser = _Parser(prog="mqlab", description="MQ Lab: watch a flash-sale event run through "
                                                "queues, Redis and a database.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("scenarios", help="list the scenarios")
    run = sub.add_parser("run", help="run a scenario")
    names = run.add_subparsers(dest="scenario", required=True, parser_class=_Parser)
    for scenario in SCENARIOS.values():
        p = names.add_parser(scenario.name, help=scenario.description)
        _add_config_options(p, scenario.config_model)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        if scenario.plot:
            p.add_argument("--plot", metavar="PATH", default=None,
                           help=f"where to write the plot (default out/{scenario.name}.png; "
                                "not written with --json unless given)")
    from real_adapters.cli import add_commands  # `worker` and `real`; imports no client library

    add_commands(sub, _Parser)
    return parser


def _config_from_args(model: Any, args: argparse.Namespace) -> Any:
    from simulator.config_errors import input_error_from

    raw: dict[str, Any] = {}
    for name in model.model_fields:
        value = getattr(args, name, None)
        if value is None:
            continue
        if name == "faults":
            value = [_parse_fault(v) for v in value]
        elif name == "piecewise":
            value = _parse_steps(value)
        raw[name] = value
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise input_error_from(exc, flags=True) from None


def _run(args: argparse.Namespace) -> int:
    from simulator.scenarios.registry import SCENARIOS

    scenario = SCENARIOS[args.scenario]
    config = _config_from_args(scenario.config_model, args)
    plot_path = getattr(args, "plot", None)
    if plot_path is not None:
        _check_writable(Path(plot_path))
    result = scenario.run(config)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        print(result.report())
    if scenario.plot and (plot_path is not None or not args.json):
        path = Path(plot_path or f"out/{scenario.name}.png")
        _check_writable(path)
        figure = scenario.load(scenario.plot)(result)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        if not args.json:
            print(f"  plot written to    {path}")
    return 0


def _check_writable(path: Path) -> None:
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InputError("--plot", str(path), "a file name ending in .png, .svg or .pdf")
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise InputError("--plot", str(path), "a path whose folder is a directory")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "scenarios":
            from simulator.scenarios.registry import SCENARIOS

            width = max(len(n) for n in SCENARIOS)
            for scenario in SCENARIOS.values():
                print(f"{scenario.name:<{width}}  {scenario.description}")
            return 0
        if args.command in ("worker", "real"):
            from real_adapters.cli import dispatch

            return dispatch(args)
        return _run(args)
    except InputError as exc:
        print(f"mqlab: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("mqlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mqlab ... | head`: the reader left; not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
