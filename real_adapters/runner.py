"""``mqlab real flash-sale``: one bounded experiment on the real services.

The runner starts K consumer processes (and a relay for the outbox pattern), waits until each
is connected, starts the load generator, injects the planned faults while it watches progress,
declares the run drained, stops the workers, takes what is left in the queues (the final
drain), audits the real state, merges every process's history and runs the one checker on it.
The result has the JSON shape of ``mqlab run flash-sale`` plus ``audit`` and ``faults``.

Everything is bounded: ``max_seconds`` for the run, fixed waits for start-up and shutdown.
Only processes this runner started are signalled, by pid.  A broker restart always ends with
``start_app`` (in a finally); a paused worker is always continued before it is stopped.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.checker import check
from simulator.config import FlashSaleConfig
from simulator.errors import InputError, ServiceDown
from simulator.flow import QUEUE, STOCK_KEY

from . import hostload, journal
from .audit import audit_state, final_drain, history_metrics
from .bootstrap import build_ports, check_namespace, close_ports
from .faults import FaultSpec, crash_point_arg, restart_broker
from .procs import Fleet, Proc
from .settings import Settings, mask

POLL_S = 0.05
READY_S = 45.0        # start-up of every worker (imports, connections) on a busy machine
SENDING_WAIT_S = 3.0  # kill/sending: the longest wait for the target to be mid-send
POINT_RESTART_S = 1.0


@dataclass
class RealOptions:
    config: FlashSaleConfig
    settings: Settings
    faults: tuple[FaultSpec, ...] = ()
    namespace: str = ""
    run_dir: Path | None = None
    keep: bool = False            # leave queues, keys and tables behind (to look at them)
    max_seconds: float = 120.0
    quiet_s: float = 2.0          # nothing left and nothing happening for this long: drained
    relay_restart_s: float = 0.5

    def __post_init__(self) -> None:
        if self.config.mode != "async":
            raise InputError("--mode", self.config.mode, "async (the real run drives consumers)")
        if not 1 <= self.config.consumers <= 32:
            raise InputError("--consumers", self.config.consumers, "1..32 worker processes")
        if not 0 < self.max_seconds <= 3600:
            raise InputError("--max-seconds", self.max_seconds, "0 < seconds <= 3600")
        check_namespace(self.namespace)
        for spec in self.faults:
            if spec.target.startswith("consumer-") and int(spec.target[9:]) > self.config.consumers:
                raise InputError("--fault", spec.text, f"a consumer from 1 to {self.config.consumers}")
            if spec.target == "relay" and self.config.write_pattern != "outbox":
                raise InputError("--fault", spec.text, "a relay fault needs --write-pattern outbox")
        points = [f.target for f in self.faults if f.kind == "point"]
        if len(points) != len(set(points)):
            raise InputError("--fault", ", ".join(f.text for f in self.faults if f.kind == "point"),
                             "at most one crash point per process")


@dataclass
class RealResult:
    config: FlashSaleConfig
    metrics: dict[str, Any]
    checker: Any
    history_sha256: str
    audit: dict[str, Any]
    faults: list[dict[str, Any]]
    run: dict[str, Any]
    ops: list = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"scenario": "flash-sale", "world": "real", "seed": self.config.seed,
                "config": self.config.model_dump(mode="json"), "metrics": self.metrics,
                "checker": self.checker.to_dict(), "history_sha256": self.history_sha256,
                "audit": self.audit, "faults": self.faults, "run": self.run}


class Runner:
    def __init__(self, opts: RealOptions):
        self.opts = opts
        self.cfg = opts.config
        self.ns = opts.namespace or "r" + uuid.uuid4().hex[:10]
        self.run_dir = Path(opts.run_dir or tempfile.mkdtemp(prefix=f"mqlab-{self.ns}-"))
        points = {f.target: crash_point_arg(f) for f in opts.faults if f.kind == "point"}
        self.fleet = Fleet(self.run_dir, self.ns, opts.settings, max_seconds=opts.max_seconds + 30,
                           crash_points=points)
        self.pending = [f for f in opts.faults if f.kind != "point"]
        self.fired: list[dict[str, Any]] = []
        # planned restarts: (when, role, name, the fault's note, when it went down)
        self.restarts: list[tuple[float, str, str, dict[str, Any], float]] = []
        self.coming_back: list[tuple[Proc, dict[str, Any], float]] = []  # restarted, not yet ready
        self.promised: set[str] = set()
        self.dequeued: set[str] = set()
        self.last_progress = time.monotonic()
        self.peak_depth = 0
        self.errors: list[str] = []
        self.t0 = 0.0

    # ------------------------------------------------------------------ the run
    def run(self) -> RealResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(self.cfg.model_dump_json(), encoding="utf-8")
        history, sink = journal.process_history(self.run_dir, "runner")
        self.rec = history.record
        started = time.time()
        timed_out = False
        try:
            self.admin = build_ports(self.opts.settings, history=history, process_name="runner",
                                     namespace=self.ns, declare=True)
        except BaseException:
            sink.close()
            raise
        try:
            self._open_sale()
            fleet = self.fleet
            workers = [fleet.spawn("consumer", f"consumer-{i + 1}") for i in range(self.cfg.consumers)]
            if self.cfg.write_pattern == "outbox":
                workers.append(fleet.spawn("relay", "relay"))
            self.loadgen = fleet.spawn("loadgen", "loadgen")
            fleet.wait_ready([*workers, self.loadgen], READY_S)
            self.t0 = time.time()
            cpu_before = hostload.snapshot()
            (self.run_dir / "GO").write_text(str(self.t0), encoding="utf-8")
            timed_out = not self._watch()
            cpu_after, window = hostload.snapshot(), time.time() - self.t0
            self.errors += self.fleet.stop_all()
            self.restarts.clear()
            host = hostload.usage(cpu_before, cpu_after, workers_cpu_s=_cpu_seconds(self.run_dir),
                                  seconds=window, messages=len(self.dequeued))
            drained, dead = final_drain(self.admin)
            ops = journal.merge(self.run_dir)
            result = check(ops)
            audit = audit_state(self.admin, self.cfg, drained=drained, dead_lettered=dead,
                                history_granted=result.counts["granted"])
        finally:
            self.errors += self.fleet.stop_all(force=True)
            sink.close()
            if not self.opts.keep:
                self._clean()
            close_ports(self.admin)
        journal.write_merged(self.run_dir, ops)
        metrics = history_metrics(ops, self.cfg, result.counts["granted"])
        metrics.update(peak_queue_depth=self.peak_depth, wall_seconds=round(time.time() - started, 3),
                       workers=self.cfg.consumers)
        run = {"namespace": self.ns, "run_dir": str(self.run_dir), "timed_out": timed_out, "host": host,
               "peak_rss_mib": _peak_rss_mib(self.run_dir),
               "errors": self.errors, "database": self.opts.settings.database_kind,
               "services": {"amqp": mask(self.opts.settings.amqp_url),
                            "redis": mask(self.opts.settings.redis_url),
                            "database": mask(self.opts.settings.database_url)}}
        out = RealResult(self.cfg, metrics, result, journal.sha256(ops), audit, self.fired, run, ops)
        (self.run_dir / "result.json").write_text(json.dumps(out.to_dict(), sort_keys=True), encoding="utf-8")
        return out

    def _open_sale(self) -> None:
        """Empty queues, tables and keys under this namespace, then put the stock on sale."""
        self.admin.broker.purge(QUEUE)
        self.admin.db.reset()
        offered = self.cfg.offered_stock
        done = self.admin.redis.set(STOCK_KEY, offered)
        if done.error is not None:
            raise done.error
        self.admin.db.set_stock(offered)
        self.rec("ok", "stock-init", "world", {"stock": self.cfg.stock, "offered": offered})

    def _watch(self) -> bool:
        """Fire faults and follow progress until drained (True) or out of time (False)."""
        limit = time.monotonic() + self.opts.max_seconds
        while time.monotonic() < limit:
            self._read_progress()
            self._sample_depth()
            self._fire_due()
            self._check_exits()
            if not self.restarts and not self.fleet.any_alive("consumer"):
                self.errors.append("no consumer left running")
                return True
            if self._drained():
                for spec in self.pending:  # progress stopped short of when they were due
                    self.fired.append({"fault": spec.text, "kind": spec.kind, "target": spec.target,
                                       "skipped": "never due"})
                self.pending.clear()
                return True
            time.sleep(POLL_S)
        self.errors.append(f"not drained within {self.opts.max_seconds} s")
        return False

    def _read_progress(self) -> None:
        for p in self.fleet.procs:
            for op in p.tail.new_ops():
                if op["f"] == "dequeue" and op["type"] == "ok" and op.get("msg_id"):
                    if op["msg_id"] not in self.dequeued:
                        self.dequeued.add(op["msg_id"])
                        self.last_progress = time.monotonic()
                elif op["f"] == "submit" and op["type"] == "ok":
                    self.promised.add(op["msg_id"])

    def _sample_depth(self) -> int | None:
        try:
            depth = self.admin.broker.queue_depth(QUEUE)
        except ServiceDown:
            return None
        self.peak_depth = max(self.peak_depth, depth)
        return depth

    def _drained(self) -> bool:
        if self.loadgen.popen.poll() is None or self.restarts or self.coming_back:
            return False  # still loading, or a replacement process is still starting
        if any(p.paused_until is not None for p in self.fleet.procs):
            return False
        idle = time.monotonic() - self.last_progress
        if self.pending and idle < self.opts.quiet_s:
            return False  # a fault still to come; if nothing moves it never will (see _watch)
        try:
            if self.cfg.write_pattern == "outbox" and self.admin.db.outbox_unpublished(1):
                return False
            if self.admin.broker.queue_depth(QUEUE) != 0:
                return False
        except ServiceDown:
            return False
        if self.promised and self.promised <= self.dequeued and not self.pending:
            return idle >= 0.3  # every promise kept; a moment for stray redeliveries to settle
        return idle >= self.opts.quiet_s  # some promises may be broken (lost): settle and stop

    # ------------------------------------------------------------------ faults
    def _fire_due(self) -> None:
        elapsed = time.time() - self.t0
        share = len(self.dequeued) / max(1, self.cfg.submissions)
        for p in self.fleet.resume_due():
            self.rec("info", "resume", p.name, component="consumer")
        for planned in list(self.restarts):
            when, role, name, note, down_at = planned
            if time.monotonic() >= when:
                self.restarts.remove(planned)
                self.coming_back.append((self.fleet.spawn(role, name), note, down_at))
                self.rec("info", "restart", name, component=role)
        for back in list(self.coming_back):
            proc, note, down_at = back
            if (self.run_dir / f"{proc.stem}.ready").exists():
                # how long the target was really gone, start-up included (the model's restart_after)
                note["back_after_s"] = round(time.monotonic() - down_at, 3)
                self.coming_back.remove(back)
        for spec in list(self.pending):
            if spec.due(elapsed, share):
                self.pending.remove(spec)
                self._fire(spec, elapsed)

    def _fire(self, spec: FaultSpec, elapsed: float) -> None:
        note: dict[str, Any] = {"fault": spec.text, "kind": spec.kind, "target": spec.target,
                                "at_s": round(elapsed, 3)}
        if spec.kind == "broker-restart":
            down = spec.seconds if spec.seconds is not None else 1.0
            try:
                note["down_s"] = round(restart_broker(down, on_stop=lambda: self.rec(
                    "info", "crash", "broker", component="broker")), 3)
            finally:
                self.rec("info", "restart", "broker", component="broker")
            self.fired.append(note)
            return
        proc = self.fleet.live(spec.target)
        if proc is None:
            note["skipped"] = "not running"
            self.fired.append(note)
            return
        if spec.kind == "stop":
            self.fleet.pause(proc, spec.seconds or 0.0)
            self.rec("info", "pause", proc.name, component="consumer")
            note["pause_s"] = spec.seconds
        else:  # kill -9
            if spec.sending:
                note["sending"] = self._await_sending(proc)
            self.fleet.kill(proc)
            self.rec("info", "crash", proc.name, {"signal": "SIGKILL"}, component=proc.role)
            if spec.seconds is not None:
                self.restarts.append((time.monotonic() + spec.seconds, proc.role, proc.name, note,
                                      time.monotonic()))
        note["at_s"] = round(time.time() - self.t0, 3)
        self.fired.append(note)

    def _await_sending(self, proc: Proc) -> bool:
        """Wait (bounded) until the target's last op is a committed grant: it is in the
        voucher gateway call, past the commit and before the ack."""
        limit = time.monotonic() + SENDING_WAIT_S
        while time.monotonic() < limit:
            proc.tail.new_ops()
            last = proc.tail.last
            if last is not None and last["f"] == "grant" and last["type"] == "ok":
                return True
            time.sleep(0.001)
        return False

    def _check_exits(self) -> None:
        for p in self.fleet.procs:
            code = p.popen.poll()
            if code is None or p.exit_seen:
                continue
            p.exit_seen = True
            if p.killed_by_us or (p.role == "loadgen" and code == 0):
                continue
            if code == -signal.SIGKILL and p.generation == 1 and any(
                    s.kind == "point" and s.target == p.name for s in self.opts.faults):
                # died at its planned crash point (it recorded the crash itself)
                note = {"fault": next(s.text for s in self.opts.faults
                                      if s.kind == "point" and s.target == p.name),
                        "kind": "point", "target": p.name, "at_s": round(time.time() - self.t0, 3)}
                self.fired.append(note)
                delay = self.opts.relay_restart_s if p.role == "relay" else POINT_RESTART_S
                self.restarts.append((time.monotonic() + delay, p.role, p.name, note, time.monotonic()))
            else:
                self.errors.append(f"{p.name} exited unexpectedly ({code})")
                self.rec("info", "crash", p.name, {"exit": code}, component=p.role)

    # ------------------------------------------------------------------ the end
    def _clean(self) -> None:
        for step in (self.admin.broker.delete_topology, self.admin.redis.clear, self.admin.db.drop):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the run's own result
                self.errors.append(f"cleanup {step.__name__}: {type(exc).__name__}")


def _peak_rss_mib(run_dir: Path) -> dict[str, float]:
    """Each worker process's peak RSS in MiB, by process file stem (written on a clean exit)."""
    return {p.name[: -len(".proc.json")]: json.loads(p.read_text(encoding="utf-8"))["peak_rss_mib"]
            for p in sorted(run_dir.glob("*.proc.json"))}


def _cpu_seconds(run_dir: Path) -> float:
    """CPU our worker processes spent on their work (from their timings files)."""
    total_ms = 0.0
    for ops in journal.read_timings(run_dir).values():
        for name, summary in ops.items():
            if name.endswith(".cpu") and summary["count"]:
                total_ms += summary["mean"] * summary["count"]
    return total_ms / 1000.0


def run_real(opts: RealOptions) -> RealResult:
    return Runner(opts).run()


def remove_run_dir(result: RealResult) -> None:
    shutil.rmtree(result.run["run_dir"], ignore_errors=True)
