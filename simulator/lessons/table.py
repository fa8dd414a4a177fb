"""The lesson map: lesson -> curriculum rows -> checked claim -> scenario.

This table is the one source of the map printed in ``00-start-here`` and of
``notebooks/README.md``; nothing else lists the lessons by hand.  Every claim named here
is asserted by the closing cell of its notebook (``check_claims`` of the lesson module),
so "row X is covered" means "a notebook cell fails if the simulator stops showing it".
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Claim", "Lesson", "LESSONS", "ROWS", "lesson", "notebook_path", "coverage", "map_markdown",
           "coverage_markdown"]

# Curriculum rows A-D (curriculum.md), in a few words of our own.
ROWS: dict[str, str] = {
    "A1": "scale-out (수평 확장): more servers behind a load balancer",
    "A2": "sessions when there are many servers (세션 관리)",
    "A3": "scale-up (수직 확장): a bigger machine, the ~60 % trigger, downtime, ceiling",
    "B1": "synchronous handling collapses under the opening spike (동기 처리)",
    "B2": "async: answer 200 at once, queue the work (비동기 처리)",
    "B3": "a dedicated event table keeps I/O off the other tables (이벤트 응답 전용 테이블)",
    "B4": "split the transaction into queued stages (트랜잭션 분리)",
    "B5": "stock as a DB row: lock waits and oversell (재고 관리)",
    "B6": "Redis: one command thread, atomic DECR, TTL ends the event",
    "B7": "Redis can lose data: persistence, ledger in the DB, safety stock (안전 재고)",
    "B8": "broadcast one event to several services (이벤트 브로드캐스팅)",
    "C1": "producer, queue, consumer; consumers scale out",
    "C2": "message loss and its fixes (메시지 유실)",
    "C3": "duplicates and idempotent handling (중복 처리)",
    "C4": "ordering across competing consumers (처리 순서 보장)",
    "C5": "tracing one request by correlation id (추적 ID)",
    "C6": "schemas and monitoring against complexity (복잡도 증가)",
    "C7": "DB write + publish consistency: outbox, reconciliation, compensation (트랜잭션 일관성)",
    "D1": "AMQP: one open protocol, the same behaviour everywhere",
    "D2": "exchange, queue, binding; routing key vs binding key",
    "D3": "exchange types: direct, fanout, topic, headers",
    "D4": "RabbitMQ features: priority, TTL, dead-letter queue, max length",
    "D5": "RabbitMQ or Kafka: queue vs partitioned log",
    "E1": "the design on real RabbitMQ, Redis and PostgreSQL: the same checker, an audit that reconciles",
}


@dataclass(frozen=True)
class Claim:
    rows: tuple[str, ...]
    text: str        # what the closing cell asserts, in words
    key: str         # the name of the check in the lesson module's ``check_claims``


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    title: str
    question: str                     # the interview question, in our words
    scenario: str | None              # registry name (None: no simulation)
    module: str                       # simulator.lessons.<module> holds cells, panel, checks
    claims: tuple[Claim, ...] = field(default=())

    @property
    def rows(self) -> tuple[str, ...]:
        seen: list[str] = []
        for c in self.claims:
            seen += [r for r in c.rows if r not in seen]
        return tuple(seen)

    @property
    def filename(self) -> str:
        return f"{self.number:02d}-{self.slug}.ipynb"


LESSONS: tuple[Lesson, ...] = (
    Lesson(0, "start-here", "Start here",
           "A one-day gift event opens on the hour and the first minutes bring a flood of survey "
           "submissions; every valid one earns a coffee voucher until the stock is gone. How would "
           "you build it?", "flash-sale", "lesson00_start",
           (Claim(("B2", "C1"), "the safe architecture (queue + consumers + atomic stock) grants exactly "
                  "the stock with nothing lost, duplicated or oversold", "safe_flow"),)),
    Lesson(1, "scale-up-vs-scale-out", "Scale-up vs scale-out",
           "Traffic will spike at the opening: add servers, or buy a bigger one?", "scale", "lesson01_scale",
           (Claim(("A1",), "when one machine dies, scale-out keeps serving; the single big box serves nothing "
                  "in its downtime window", "failure"),
            Claim(("A2",), "sticky sessions in local memory die with the server; a shared store loses none",
                  "sessions"),
            Claim(("A3",), "waiting grows like 1/(1-rho): 60 % -> 90 % utilisation multiplies the mean "
                  "response several times", "knee"))),
    Lesson(2, "sync-vs-async", "Sync vs async",
           "Why not just handle each submission inside the HTTP request?", "sync-vs-async", "lesson02_async",
           (Claim(("B1",), "handled synchronously, the opening spike pushes the response p99 past 5x the async "
                  "one", "sync_collapse"),
            Claim(("B2",), "async answers at once while the queue rises with the spike and then drains to zero",
                  "queue_drains"),
            Claim(("B3",), "member logins suffer when the event shares their database; a dedicated event "
                  "database keeps them fast", "dedicated_db"),
            Claim(("C1",), "vouchers per second grow with consumers until the SMS gateway's rate limit "
                  "flattens them", "consumers_scale"))),
    Lesson(3, "stock", "Stock",
           "Where should the remaining stock live so that it never oversells?", "stock", "lesson03_stock",
           (Claim(("B5",), "a DB row UPDATE never oversells but its lock wait grows with consumers; "
                  "read-then-write oversells", "row_lock"),
            Claim(("B6",), "Redis DECR and Lua never oversell (Lua never below zero), a TTL stops grants on "
                  "time, and one Redis thread saturates at its ceiling", "atomic_redis"),
            Claim(("B7",), "atomic strategies leave exactly the safety stock; read-then-write eats into it",
                  "safety_stock"))),
    Lesson(4, "loss", "Message loss",
           "What can lose a submission, and what stops each loss?", "loss", "lesson04_loss",
           (Claim(("C2",), "only durable queue + persistent messages + publisher confirms + manual ack loses "
                  "nothing to a broker or consumer crash", "only_safe_design"),
            Claim(("B7",), "a naive Redis reseed oversells, a reseed from the DB ledger does not, and a safety "
                  "stock absorbs the AOF everysec window", "reseed"))),
    Lesson(5, "duplicates", "Duplicates",
           "The broker redelivered a message you already handled. Two vouchers?", "duplicates",
           "lesson05_duplicates",
           (Claim(("C3",), "lost acks redeliver in every mode; without dedupe they become double vouchers, and "
                  "only a processed-id in the DB transaction is exactly-once in effect (Redis SET NX can mark "
                  "an id seen that was never granted)", "dedupe"),)),
    Lesson(6, "ordering", "Ordering",
           "A user submits, amends, then cancels. Can the consumers see them in another order?",
           "ordering", "lesson06_ordering",
           (Claim(("C4",), "competing consumers invert some users' events; hash partitioning by user "
                  "and a partitioned log invert none", "inversions"),
            Claim(("C4",), "a hot user piles onto one partition: the partitioned designs' load skew "
                  "exceeds the competing consumers'", "hot_key"),
            Claim(("D5",), "replaying the log from offset 0 gives the same order with no inversions; a "
                  "queue has nothing to replay", "replay"))),
    Lesson(7, "outbox", "Outbox",
           "The DB commit and the publish cannot be one transaction. What breaks, and how do you fix it?",
           "outbox", "lesson07_outbox",
           (Claim(("C7",), "naive dual writes leave orphans (DB first) and ghosts (publish first); the outbox "
                  "leaves neither, reconciliation re-sends orphans, compensation gives stock back without "
                  "over-crediting, and a per-message reservation leaks nothing when a consumer dies "
                  "mid-way", "outbox"),)),
    Lesson(8, "routing", "Routing",
           "One 'survey submitted' event must reach stock, ledger and voucher services. How does AMQP "
           "route it?", "routing", "lesson08_routing",
           (Claim(("D1", "D2", "D3"), "every published message lands in exactly the queues the AMQP "
                  "rules say (direct, fanout, topic, headers, consistent hash)", "table"),
            Claim(("B8", "B4"), "fanout gives each service (stage) its own copy in its own queue; the slow "
                  "voucher stage shows as the one growing queue and leaves the others' latency unchanged",
                  "fanout"),
            Claim(("D4",), "high priority overtakes a backlog only when the queue is declared with "
                  "x-max-priority; expired, rejected and overflowed messages reach the DLQ with "
                  "their reason", "features"))),
    Lesson(9, "tracing-and-schemas", "Tracing and schemas",
           "Something went wrong for one user. How do you find what happened to their submission?",
           "tracing", "lesson09_tracing",
           (Claim(("C5",), "one correlation id pulls a submission's whole path out of the history, "
                  "across every component", "trace"),
            Claim(("C6",), "payloads written with a drifted schema all go to the dead-letter queue and "
                  "none reaches the handler; the dashboard shows depth and unacked", "schema"))),
    Lesson(10, "real-services", "Real services",
           "The simulator showed the design safe. Does it survive real RabbitMQ, Redis and PostgreSQL?",
           "flash-sale", "lesson10_real",
           (Claim(("E1",), "on the real services the safe design loses, doubles and oversells nothing, grants "
                  "exactly the stock, and the audit of Redis, queue and database reconciles", "real_safe"),
            Claim(("E1",), "a worker SIGKILLed mid-send loses nothing: its unacked messages are redelivered and "
                  "the dedupe row keeps one voucher each", "real_kill"),
            Claim(("D1", "D5"), "the model given the real run's scenario and fault agrees with the real broker "
                  "on whether anything is lost, doubled or oversold", "conformance"))),
)


def lesson(number: int) -> Lesson:
    for item in LESSONS:
        if item.number == number:
            return item
    raise KeyError(f"no lesson {number}")


def notebook_path(number: int) -> str:
    return f"notebooks/{lesson(number).filename}"


def coverage(lessons: tuple[Lesson, ...] = LESSONS) -> dict[str, list[tuple[int, str]]]:
    """Row -> [(lesson number, claim key)] for every claim; rows with no claim map to []."""
    out: dict[str, list[tuple[int, str]]] = {row: [] for row in ROWS}
    for les in lessons:
        for claim in les.claims:
            for row in claim.rows:
                out[row].append((les.number, claim.key))
    return out


def map_markdown(available: set[int] | None = None) -> str:
    """The lesson map as a Markdown table (``available``: lessons whose notebook exists)."""
    lines = ["| # | lesson | the question | curriculum rows | scenario |", "|---|---|---|---|---|"]
    for les in LESSONS[1:]:
        ready = available is None or les.number in available
        name = f"[{les.title}]({les.filename})" if ready else f"{les.title} (coming)"
        lines.append(f"| {les.number:02d} | {name} | {les.question} | {', '.join(les.rows) or '-'} "
                     f"| `{les.scenario}` |")
    return "\n".join(lines)


def coverage_markdown(available: set[int] | None = None) -> str:
    """Curriculum row -> the notebook claims that check it (only lessons in ``available``, if given)."""
    cov = coverage(tuple(les for les in LESSONS if available is None or les.number in available))
    by_key = {(les.number, c.key): (les, c) for les in LESSONS for c in les.claims}
    lines = ["| row | topic | checked by |", "|---|---|---|"]
    for row, topic in ROWS.items():
        hits = [f"{by_key[h][0].filename} `{h[1]}`: {by_key[h][1].text}" for h in cov[row]]
        planned = [f"lesson {les.number:02d} (coming)" for les in LESSONS
                   if row in les.rows and available is not None and les.number not in available]
        lines.append(f"| {row} | {topic} | {'<br>'.join(hits or planned) or 'not yet checked'} |")
    return "\n".join(lines)
