"""Lesson 10: the same design on real RabbitMQ, Redis and PostgreSQL - curriculum D1, D5, E1.

The notebook runs ``mqlab real flash-sale`` in-process (``real_adapters.runner.run_real``) when
the services answer, and skips those cells cleanly (saying how to start them) when they do not.
Real runs vary in timing, so only invariants (nothing lost, doubled or oversold; the audit
reconciles) are compared by nbval; the panel drives the model of the same experiment.
"""

from __future__ import annotations

from typing import Any, Mapping

from simulator.lessons import cells as c
from simulator.lessons.claims import assert_claims
from simulator.lessons.panel import Panel, build_panel, dropdown, float_slider, slider
from simulator.lessons.table import lesson

LESSON = lesson(10)
KILL = "kill:consumer-1@30%/sending"
SAFETY = ("lost", "double_granted", "oversold")

HOW_TO_START = """\
Start the services (docs/real-services.md), then re-run the notebook:
  rabbitmq-server -detached && rabbitmqctl await_startup
  rabbitmq-plugins enable rabbitmq_consistent_hash_exchange
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
or point MQLAB_AMQP_URL / MQLAB_REDIS_URL / MQLAB_DATABASE_URL at running ones."""
SKIPPED = "services not reachable: this cell did nothing (LIVE = False)"
CLOSING = ("invariants asserted on the real services whenever LIVE: lost 0, double_granted 0, oversold 0, "
           "reconciled True, and lost 0 after a worker is killed mid-send")


def available() -> tuple[bool, str]:
    try:
        from real_adapters.runner import run_real  # noqa: F401
        from simulator.scenarios.flash_sale import run_flash_sale  # noqa: F401
    except ImportError as exc:
        return False, f"real adapters not importable ({exc})"
    return True, ""


# ------------------------------------------------------------------ where the services are
def settings() -> Any:
    from real_adapters.settings import Settings

    return Settings.from_env()


def settings_lines() -> str:
    """The URLs MQ Lab will use, passwords masked."""
    from real_adapters.probe import pg_url
    from real_adapters.settings import mask

    s = settings()
    return "\n".join([f"  MQLAB_AMQP_URL     {mask(s.amqp_url)}",
                      f"  MQLAB_REDIS_URL    {mask(s.redis_url)}",
                      f"  MQLAB_DATABASE_URL {mask(s.database_url)}",
                      f"  PostgreSQL tried   {mask(pg_url())}"])


def _problem(probe: Any, url: str) -> str | None:
    try:
        probe(url)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not there"
        return type(exc).__name__  # never the message: it may echo the URL


def detect() -> tuple[bool, str | None]:
    """Probe RabbitMQ, Redis and PostgreSQL (short timeouts); print what answered.

    Returns ``(LIVE, database_url)``: LIVE needs RabbitMQ and a real Redis; the database is
    PostgreSQL when it answers, else SQLite (MQLAB_DATABASE_URL when that is SQLite).
    """
    from real_adapters.probe import pg_url, probe_postgresql, probe_rabbitmq, probe_redis
    from real_adapters.settings import DEFAULT_DATABASE_URL, mask

    s = settings()
    found = {"rabbitmq": (s.amqp_url, _problem(probe_rabbitmq, s.amqp_url)),
             "redis": (s.redis_url, "fakeredis asked for (MQLAB_OFFLINE / fake://): worker processes cannot "
                                    "share it" if s.fake_redis else _problem(probe_redis, s.redis_url)),
             "postgresql": (pg_url(), _problem(probe_postgresql, pg_url()))}
    for name, (url, problem) in found.items():
        print(f"  {name:<10} {mask(url):<45} {'reachable' if problem is None else 'NOT reachable (' + problem + ')'}")
    live = found["rabbitmq"][1] is None and found["redis"][1] is None
    if found["postgresql"][1] is None:
        database = pg_url()
    else:
        database = s.database_url if s.database_kind == "sqlite" else DEFAULT_DATABASE_URL
    if live:
        print(f"LIVE = True; the database is {mask(database)}")
    else:
        print("LIVE = False\n" + HOW_TO_START)
    return live, (database if live else None)


# ------------------------------------------------------------------ the real runs
def config(seed: int, submissions: int, stock: int, workers: int, gateway_ms: float) -> Any:
    from simulator.config import FlashSaleConfig

    return FlashSaleConfig(seed=seed, submissions=submissions, stock=stock, consumers=workers,
                           gateway_latency_ms=gateway_ms)


def run_real_sale(cfg: Any, database_url: str, faults: tuple[str, ...] = (), compare: bool = False,
                  max_seconds: float = 60.0) -> dict[str, Any]:
    """``mqlab real flash-sale`` in-process: its ``--json`` document (with ``conformance`` when
    ``compare``). Temporary queues, keys, tables and the run directory are removed afterwards."""
    from real_adapters.faults import parse_fault
    from real_adapters.runner import RealOptions, remove_run_dir, run_real
    from real_adapters.settings import Settings

    s = settings()
    s = Settings(amqp_url=s.amqp_url, redis_url=s.redis_url, database_url=database_url,
                 connect_timeout_s=s.connect_timeout_s)
    result = run_real(RealOptions(config=cfg, settings=s, faults=tuple(parse_fault(f) for f in faults),
                                  max_seconds=max_seconds))
    try:
        doc = result.to_dict()
        if compare:
            from real_adapters.conformance import compare_with_model

            doc["conformance"] = compare_with_model(result)
    finally:
        remove_run_dir(result)
    return doc


def report(doc: dict[str, Any]) -> str:
    from real_adapters.report import real_report

    return real_report({k: v for k, v in doc.items() if k != "conformance"})


def model_sale(cfg: Any, kill_at: float | None = None) -> Any:
    """The simulator's run of the same scenario (optionally consumer-1 killed at ``kill_at`` s)."""
    from simulator.config import Fault
    from simulator.scenarios.flash_sale import run_flash_sale

    faults = () if kill_at is None else (Fault(target="consumer-1", at=kill_at),)
    return run_flash_sale(cfg.model_copy(update={"faults": faults}))


def counts_of(run: Any) -> dict[str, Any]:
    """Checker counts of a real run (its JSON document) or a model run."""
    if isinstance(run, dict):
        return {**run["checker"], "reconciled": run["audit"]["reconciled"]}
    return {**run.checker.counts, "valid": run.checker.valid}


def safety_line(run: Any) -> str:
    """The invariant part of a run: identical for the real run and the model of it when the design holds."""
    n = counts_of(run)
    return (f"checker: lost {n['lost']}, double_granted {n['double_granted']}, oversold {n['oversold']}, "
            f"granted {n['granted']} of stock {n['stock']}, valid {n['valid']}")


def audit_lines(doc: dict[str, Any]) -> str:
    a = doc["audit"]
    return (f"audit ({doc['run']['database']}): offered {a['offered_stock']}, taken from Redis "
            f"{a['taken_from_stock']}, ledger rows {a['ledger_rows']}, stock left {a['stock_left']}, "
            f"leaked {a['stock_leaked']}, queue left {a['queue_ready_after_drain']}, ledger matches history "
            f"{a['ledger_matches_history']} -> reconciled {a['reconciled']}")


def fault_lines(doc: dict[str, Any]) -> str:
    out = []
    for f in doc["faults"]:
        when = "skipped: " + str(f["skipped"]) if "skipped" in f else f"fired at {f['at_s']} s"
        out.append(f"{f['fault']}: {when}")
    out.append(f"redeliveries {doc['metrics']['redeliveries']} (the killed worker's unacked messages, "
               "delivered again to the survivor)")
    return "\n".join(out)


def compare_table(doc: dict[str, Any]) -> str:
    conf = doc["conformance"]
    lines = [f"  {'figure':<18}{'real':>10}{'model':>10}  verdict"]
    for row in conf["rows"]:
        lines.append(f"  {row['figure']:<18}{row['real']!s:>10}{row['model']!s:>10}  {row['verdict']}")
    return "\n".join(lines + [f"  note: {n}" for n in conf["notes"]])


def key_numbers(sale: dict[str, Any], killed: dict[str, Any]) -> dict[str, Any]:
    rows = {r["figure"]: r for r in killed["conformance"]["rows"]}
    return {
        "database": sale["run"]["database"],
        **{name: sale["checker"][name] for name in SAFETY},
        "granted": sale["checker"]["granted"], "stock": sale["checker"]["stock"],
        "reconciled": sale["audit"]["reconciled"],
        "kill_fired": bool(killed["faults"]) and "skipped" not in killed["faults"][0],
        **{f"killed_{name}": killed["checker"][name] for name in SAFETY},
        "killed_granted": killed["checker"]["granted"], "killed_reconciled": killed["audit"]["reconciled"],
        "model_agrees": all(rows[name]["verdict"] == "same" for name in (*SAFETY, "unexpected", "valid")),
    }


CHECKS = {
    "real_safe": lambda n: all(n[k] == 0 for k in SAFETY) and n["granted"] == n["stock"] and n["reconciled"],
    "real_kill": lambda n: n["kill_fired"] and all(n[f"killed_{k}"] == 0 for k in SAFETY)
    and n["killed_granted"] == n["stock"] and n["killed_reconciled"],
    "conformance": lambda n: n["model_agrees"],
}


def check_claims(numbers: Mapping[str, Any]) -> None:
    assert_claims(LESSON, CHECKS, numbers)


# ------------------------------------------------------------------ the panel: the model of the experiment
PRESETS: dict[str, dict[str, Any]] = {
    "the safe design, no fault": {},
    "kill worker 1 at 0.8 s": {"kill_at": 0.8},
    "kill worker 1, auto ack: messages lost": {"kill_at": 0.8, "ack": "auto"},
    "kill worker 1, stock as Redis GET then SET": {"kill_at": 0.8, "stock_strategy": "redis-get-set"},
    "one worker, slow gateway": {"consumers": 1, "gateway_latency_ms": 60.0},
}


def panel_run(values: dict[str, Any]) -> Any:
    from simulator.config import Fault, FlashSaleConfig
    from simulator.scenarios.flash_sale import run_flash_sale

    v = dict(values)
    kill_at = v.pop("kill_at")
    faults = () if kill_at == "never" else (Fault(target="consumer-1", at=float(kill_at)),)
    return run_flash_sale(FlashSaleConfig(seed=v.pop("seed"), submissions=200, stock=150, faults=faults, **v))


def panel_summary(result: Any) -> str:
    from real_adapters.audit import redeliveries, throughput

    cfg, n = result.config, result.checker.counts
    rate = throughput(result.ops)
    kill = ", ".join(f"{f.target} killed at {f.at} s" for f in cfg.faults) or "no fault"
    return "\n".join([
        f"model: {cfg.consumers} workers, gateway {cfg.gateway_latency_ms:g} ms, ack {cfg.ack}, stock "
        f"{cfg.stock_strategy}; {kill}",
        safety_line(result),
        f"redeliveries {redeliveries(result.ops)}, throughput "
        f"{'-' if rate is None else f'{rate:.1f}'} msg/s"])


def panel_plot(result: Any) -> Any:
    import matplotlib.pyplot as plt

    n = result.checker.counts
    names = ["lost", "double_granted", "oversold", "duplicated"]
    fig, ax = plt.subplots(figsize=(5, 2.8))
    values = [n[k] for k in names]
    ax.bar(names, values, color=["tab:red", "tab:red", "tab:red", "tab:grey"])
    for x, v in enumerate(values):
        ax.text(x, v, str(v), ha="center", va="bottom")
    ax.set_ylim(0, max(10, max(values) * 1.2))
    ax.set_title(f"the model: {n['granted']} vouchers for stock {n['stock']}")
    return fig


def panel(seed: int = 7) -> Panel:
    controls = {
        "consumers": slider("workers", 2, 1, 8),
        "gateway_latency_ms": float_slider("gateway ms", 20.0, 0.0, 100.0, 5.0),
        "kill_at": dropdown("kill worker 1 at (s)", ["never", 0.4, 0.8, 1.2], "never"),
        "ack": dropdown("ack", ["manual", "auto"], "manual"),
        "stock_strategy": dropdown("stock", ["redis-lua", "redis-decr", "redis-get-set", "db-update", "db-read-then-write"],
                                   "redis-lua"),
        "seed": dropdown("seed", [seed, 1, 2, 3], seed),
    }
    return build_panel("flash-sale", controls, PRESETS, panel_summary, panel_plot, runner=panel_run,
                       title="The model of the real experiment")


# ------------------------------------------------------------------ the notebook
def cells() -> list[c.Cell]:
    L = LESSON
    return [
        c.md(f"""
            # {L.number:02d} · {L.title}

            **Interview question.** {L.question}

            **What you will see.** A small flash sale on real RabbitMQ, Redis and PostgreSQL (worker processes,
            a load generator, a gateway stand-in), the one checker of the simulator run on the real history,
            and an audit that reconciles Redis, the queue and the database; then a worker SIGKILLed while it
            is sending a voucher; then the model of the same run set beside the real one.

            *Curriculum rows:* {", ".join(L.rows)}. *Scenario:* `{L.scenario}`, run by `mqlab real flash-sale`.
            Unlike lessons 00-09, the real runs are not seeded in time: throughput and latencies change from run
            to run, so only the invariants (nothing lost, doubled or oversold; the audit reconciles) are
            compared when this notebook is re-run. Without the services every real cell skips, saying how to
            start them.
            """),
        c.imports("lesson10_real"),
        *c.parameters({"SEED": 7, "SUBMISSIONS": 200, "STOCK": 150, "WORKERS": 2, "GATEWAY_MS": 20.0,
                       "KILL": KILL},
                      note="`SEED` fixes the submissions and their arrival pattern; the real services add "
                           "their own timing. `KILL` is the runner's fault spec: SIGKILL consumer-1 at 30 % of "
                           "the run, at a moment it is sending a voucher."),
        c.md("""
            ## Pointing MQ Lab at the services

            MQ Lab reads three URLs from the environment (defaults: the services on this machine's loopback):

            | variable | default |
            |---|---|
            | `MQLAB_AMQP_URL` | `amqp://guest:***@127.0.0.1:5672/%2F` |
            | `MQLAB_REDIS_URL` | `redis://127.0.0.1:6379/0` |
            | `MQLAB_DATABASE_URL` | `sqlite:////tmp/mqlab.sqlite`, or `postgresql://user[:password]@host:port/db` |

            `MQLAB_CONNECT_TIMEOUT_S` bounds each connect. Set them before starting Jupyter (`export
            MQLAB_AMQP_URL=...`). Every URL this notebook prints goes through `real_adapters.settings.mask`:
            a password shows as `***`.
            """),
        c.code("print(lesson.settings_lines())", ignore=True),
        c.md("Probe each service with a short timeout. `LIVE` decides whether the real cells run."),
        c.code("LIVE, DATABASE_URL = lesson.detect()", ignore=True),
        c.md("""
            ## 1. A real flash sale

            The same safe design as lesson 00: durable queue, persistent messages, publisher confirms, manual
            ack after the DB commit, dedupe in the DB transaction, atomic stock in Redis (Lua). The runner
            starts the workers as separate processes, drives the load, drains, audits the real state and runs
            the checker on the merged history. This takes a few seconds.
            """),
        c.code("""
            cfg = lesson.config(SEED, SUBMISSIONS, STOCK, WORKERS, GATEWAY_MS)
            sale = lesson.run_real_sale(cfg, DATABASE_URL) if LIVE else None
            print(lesson.report(sale) + "\\n" + lesson.audit_lines(sale) if LIVE else lesson.SKIPPED)
            """, ignore=True),
        c.md("""
            Only the invariant line is compared on re-execution. Live, it is the real checker's verdict;
            without services it is the model's verdict on the same scenario, which must read the same.
            """),
        c.code("print(lesson.safety_line(sale if LIVE else lesson.model_sale(cfg)))", check=True),
        c.md("""
            ## 2. Kill a worker while it is sending

            `kill:consumer-1@30%/sending` waits until 30 % of the submissions are in, then until consumer-1 is
            inside the gateway call, and sends it SIGKILL. Its unacked messages go back to the queue and the
            other worker takes them; the dedupe row in the database stops the one it was sending from
            becoming a second voucher.
            """),
        c.predict("MY_LOST", "How many submissions does the real checker find lost after the kill?"),
        c.guess("MY_LOST"),
        c.code("""
            killed = lesson.run_real_sale(cfg, DATABASE_URL, faults=(KILL,), compare=True) if LIVE else None
            if LIVE:
                print(lesson.report(killed) + "\\n" + lesson.audit_lines(killed))
                print(lesson.fault_lines(killed))
                compare(MY_LOST, killed["checker"]["lost"], what="lost after the kill")
            else:
                print(lesson.SKIPPED)
            """, ignore=True),
        c.code("print(lesson.safety_line(killed if LIVE else lesson.model_sale(cfg, kill_at=0.8)))", check=True),
        c.md("""
            ## 3. Simulator vs real (`--compare`)

            The model is given the real run's configuration, seed and the fault at the time it really fired.
            Lost, double granted and oversold must agree on whether they happen at all; duplicates,
            redeliveries and throughput depend on timing and are reported, not failed. AMQP is one open
            protocol (D1), so the real broker's redelivery of unacked messages is the behaviour the model
            assumed; and it is a queue, not a partitioned log (D5): the redelivered messages went to whichever
            worker was free.
            """),
        c.code("print(lesson.compare_table(killed) if LIVE else lesson.SKIPPED)", ignore=True),
        c.panel_intro("The panel runs the model of this experiment (no services needed): change workers, "
                      "gateway latency, when worker 1 dies, the ack mode and the stock strategy, then try the "
                      "same on the real services with `mqlab real flash-sale ... --fault "
                      "'kill:consumer-1@30%/sending' --compare`."),
        c.panel(),
        *c.exercise(L, 1, "In the model, kill worker 1 with `ack` set to `auto`. What does the checker find, "
                          "and why does manual ack prevent it?"),
        *c.exercise(L, 2, "In the model, make the stock `redis-get-set` (read, then write) with the kill. Does the kill matter "
                          "for overselling, or the strategy?"),
        c.md("## Key numbers and the lesson's claims"),
        c.code("""
            if LIVE:
                numbers = lesson.key_numbers(sale, killed)
                print_numbers(numbers)
                lesson.check_claims(numbers)
            else:
                print(lesson.SKIPPED)
            """, ignore=True),
        c.code("print(lesson.CLOSING)", check=True),
    ]
