"""The load driver's Locust file: run only inside its own ``python -m locust`` subprocess.

Importing locust monkey-patches the process with gevent, so the harness never imports this
module; ``runner.run_load`` starts it as a child process and reads what it leaves behind (the
history JSONL and Locust's CSV files).

Configuration comes from the environment (set by ``runner.run_load``):

    EXO_STACK_CONFIG     the stack directory (its stack.json holds peers, tokens and nodes)
    EXO_LOAD_REQUEST_TIMEOUT_S   per-request network timeout (default 10 s)

and, for the single process or the master (a worker is sent them by its master, ``PLAN``, as it
connects, so a worker on another host needs only the stack's stack.json and the master's address):

    EXO_LOAD_HISTORY     JSONL file every request's invoke and completion events are appended to
    EXO_RUN_T0_WALL_MS   the run's start (epoch ms): event times are ms since then
    EXO_LOAD_PHASES      JSON list of {"name", "duration_s", "rate_per_s"}, run in order
    EXO_SEED             seeds each user's start offset
    EXO_KEY_PREFIX       idempotency keys are f"{prefix}-{peer}-{n}"
    EXO_LOAD_USERS       users in all (all processes together)
    EXO_LOAD_WORKERS     0: one process; N: Locust's distributed mode, a master and N workers

A worker sends its history to the master (``HISTORY`` messages, every ``REPORT_EVERY_S``), which
writes each worker's to a file of its own (``runner.worker_history``) for the run to merge.

One user per peer (user i is the i-th peer by id; in distributed mode a worker's k-th user is user
k × workers + the worker's index, so the workers' users are the peers, each exactly once). A user sends only to its own tenant's nodes:
the j-th peer of a tenant alternates between the tenant's nodes 2j and 2j+1, so with 50 peers and
100 nodes per tenant every node and every peer is exercised once every user has sent twice.

Pacing: every user sends one intent every ``users / rate_per_s`` seconds of the current phase
(users start at seeded offsets spread over one interval, so the total is smooth). A phase change
rescales each user's remaining wait to the new interval, so the new rate starts at once. The
load is open-loop: each send runs in its own greenlet, so a slow answer never delays the next send
(up to ``concurrency`` overlapping requests per user). A user starved of CPU catches up by at most
one interval rather than in a burst. After the last phase users send nothing; the shape stops
the run once requests still in flight have completed (or ``DRAIN_S`` has passed). In distributed
mode the shape runs on the master, each worker keeps its own phase clock from its first user, and
the workers report their requests in flight to the master (``IN_FLIGHT`` messages) for that drain.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import orjson
from locust import FastHttpUser, LoadTestShape, events, task
from locust.runners import MasterRunner, WorkerRunner

from exoarmur import stackconfig
from exoarmur.api.transport import KEEP_ALIVE_S
from exoarmur_cli.history import FAIL, INFO, INVOKE, OK, Event, wall_ms
from exoarmur_cli.load import locust_shutdown
from exoarmur_cli.load.runner import worker_history

SCENARIO = "load"
F_SUBMIT = "submit"
IDLE_WAIT_S = 0.5  # after the last phase, users idle until the shape stops the run
REQUEST_TIMEOUT_S = float(os.environ.get("EXO_LOAD_REQUEST_TIMEOUT_S", "10"))
DRAIN_S = REQUEST_TIMEOUT_S + 2.0  # longest wait for in-flight requests after the last phase
# A connection idle this long is not reused: the api closes idle ones after KEEP_ALIVE_S, and a
# request sent just as it does meets a closed connection with no answer (the HTTP keep-alive race,
# RFC 9112 §9.3.1; measured at --scale 10, where a user sends every 37 s: 29 requests, each after
# 29.8-30.0 s idle). The 10 s margin is far wider than any lateness of the server's idle timer.
STALE_AFTER_S = KEEP_ALIVE_S - 10.0



locust_shutdown.install()  # Locust's CSV writer ends before its files close

def _phases(raw: list) -> list[dict[str, Any]]:
    phases = []
    for item in raw:
        duration, rate = float(item["duration_s"]), float(item["rate_per_s"])
        if duration <= 0 or rate <= 0:
            raise ValueError(f"phase {item!r}: duration_s and rate_per_s must be > 0")
        phases.append({"name": str(item["name"]), "duration_s": duration, "rate_per_s": rate})
    if not phases:
        raise ValueError("EXO_LOAD_PHASES names no phase")
    return phases


CONFIG = stackconfig.load(Path(os.environ["EXO_STACK_CONFIG"]))
IN_FLIGHT = "exo_in_flight"  # worker -> master: {"elapsed_s", "in_flight"}
HISTORY = "exo_history"  # worker -> master: [event line, ...], in the worker's order
PLAN_REQUEST = "exo_plan_please"  # a worker -> master, once its handlers are in place
PLAN_MESSAGE = "exo_plan"  # master -> that worker: the run's ``Plan.params``
PLAN_WAIT_S = 30.0  # a worker's first user waits this long for the plan before it gives up
REPORT_EVERY_S = 0.2  # how often a worker tells the master its requests in flight


class Plan:
    """The run's parameters: from the environment in the single process or the master, from the
    master in a worker (which asks for it as soon as it can take the answer; a user spawned before
    it came waits for it, ``await_plan``)."""

    params: dict[str, Any] | None = None
    phases: list[dict[str, Any]] = []
    phase_ends: list[float] = []
    total_s = 0.0
    seed = 0
    key_prefix = "load"
    workers = 0
    users = 0
    mono_to_run_ms = 0.0  # run-relative ms from the monotonic clock, anchored to the run's wall-clock start

    @classmethod
    def configure(cls, params: dict[str, Any]) -> None:
        cls.params = params
        cls.phases = _phases(params["phases"])
        cls.phase_ends = list(itertools.accumulate(p["duration_s"] for p in cls.phases))
        cls.total_s = cls.phase_ends[-1]
        cls.seed, cls.key_prefix = int(params["seed"]), str(params["key_prefix"])
        cls.workers, cls.users = int(params["workers"]), int(params["users"])
        cls.mono_to_run_ms = time.time() * 1000 - int(params["t0_wall_ms"]) - time.monotonic() * 1000


def _params_from_environment() -> dict[str, Any]:
    return {"phases": orjson.loads(os.environ.get("EXO_LOAD_PHASES", "[]")), "seed": os.environ.get("EXO_SEED", "0"),
            "key_prefix": os.environ.get("EXO_KEY_PREFIX", "load"), "workers": os.environ.get("EXO_LOAD_WORKERS", "0"),
            "users": os.environ.get("EXO_LOAD_USERS", str(len(CONFIG.peers))),
            "t0_wall_ms": os.environ.get("EXO_RUN_T0_WALL_MS", str(wall_ms()))}


IS_WORKER = "--worker" in sys.argv  # its plan comes from its master
if not IS_WORKER:
    Plan.configure(_params_from_environment())


def await_plan() -> None:
    waited = 0.0
    while Plan.params is None:
        if waited > PLAN_WAIT_S:
            raise RuntimeError(f"no plan from the Locust master within {PLAN_WAIT_S:g} s")
        gevent.sleep(0.05)
        waited += 0.05

# Peers in id order; each peer's nodes per the "peer j -> nodes 2j, 2j+1 of its tenant" rule.
PEERS = [CONFIG.peers[p] for p in sorted(CONFIG.peers)]
_TENANT_PEERS = {t: sorted(p.peer_id for p in PEERS if p.tenant_id == t) for t in CONFIG.tenants}
_TENANT_NODES = {t: sorted(n for n, owner in CONFIG.nodes.items() if owner == t) for t in CONFIG.tenants}


def nodes_for(peer_id: str, tenant_id: str) -> list[str]:
    nodes = _TENANT_NODES[tenant_id]
    if not nodes:
        raise ValueError(f"tenant {tenant_id} has no nodes")
    j = _TENANT_PEERS[tenant_id].index(peer_id)
    return [nodes[(2 * j) % len(nodes)], nodes[(2 * j + 1) % len(nodes)]]


# --- the history: one append-only fd, one write per line ------------------------------------
# os.write on an O_APPEND fd is one syscall that gevent never yields inside, so lines from
# different greenlets cannot interleave, and each is in the file as soon as it is written. A
# worker keeps its lines for the next HISTORY message instead (a list append never yields either).

_HISTORY_PATH = os.environ.get("EXO_LOAD_HISTORY")
_HISTORY_FD = None if IS_WORKER else os.open(_HISTORY_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_outbox: list[bytes] = []
_index = itertools.count()


def run_ms() -> float:
    return round(time.monotonic() * 1000 + Plan.mono_to_run_ms, 3)


def record(type_: str, process: str, value: dict[str, Any]) -> None:
    line = Event(next(_index), run_ms(), type_, F_SUBMIT, process, SCENARIO, value).to_json() + b"\n"
    if _HISTORY_FD is None:
        _outbox.append(line)
    else:
        os.write(_HISTORY_FD, line)


# --- the phase clock ---------------------------------------------------------------------------

class _Clock:
    t0: float | None = None  # monotonic start of the first phase (the shape's first tick; a worker's first user)
    in_flight = 0
    worker_reports: dict[str, dict] = {}  # on the master: each worker's last IN_FLIGHT report


def elapsed_s() -> float:
    return 0.0 if _Clock.t0 is None else time.monotonic() - _Clock.t0


def phase_at(t: float) -> int | None:
    """Index of the phase running ``t`` seconds after the start; None once all are over."""
    for i, end in enumerate(Plan.phase_ends):
        if t < end:
            return i
    return None


def interval_s(phase: int) -> float:
    """Seconds between one user's sends so that all users together send at the phase's rate."""
    return Plan.users / Plan.phases[phase]["rate_per_s"]


def drained() -> bool:
    """No request in flight anywhere: in this process, or (on a master) in every worker, each
    having reported after its last phase."""
    if not Plan.workers:
        return _Clock.in_flight == 0
    reports = _Clock.worker_reports.values()
    return len(reports) == Plan.workers and all(r["elapsed_s"] >= Plan.total_s and r["in_flight"] == 0 for r in reports)


class LoadShape(LoadTestShape):
    """All users at once, for the phases in order; then stop once in-flight requests are done."""

    # --users and --spawn-rate are passed (Locust warns of them otherwise); the shape counts users
    # from EXO_LOAD_USERS (``Plan.users``).
    use_common_options = True

    def tick(self):
        if _Clock.t0 is None:
            _Clock.t0 = time.monotonic()
        t = elapsed_s()
        if t < Plan.total_s or (not drained() and t < Plan.total_s + DRAIN_S):
            return Plan.users, float(Plan.users)
        return None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(IN_FLIGHT, lambda msg, **_kw: _Clock.worker_reports.__setitem__(msg.node_id, msg.data))
        runner.register_message(HISTORY, lambda msg, **_kw: _keep_history(runner.get_worker_index(msg.node_id), msg.data))
        runner.register_message(PLAN_REQUEST,
                                lambda msg, **_kw: runner.send_message(PLAN_MESSAGE, Plan.params, client_id=msg.node_id))
    elif isinstance(runner, WorkerRunner):
        # Asked for only now: a message that arrives before ``init`` has no handler yet (Locust
        # connects a worker before it fires ``init``) and is dropped.
        runner.register_message(PLAN_MESSAGE, lambda msg, **_kw: Plan.configure(msg.data))
        runner.send_message(PLAN_REQUEST)
        # Users stopped early (the drain timed out) record "interrupted": sent if the master still listens.
        environment.events.test_stop.add_listener(lambda **_kw: _send_history(runner))
        gevent.spawn(_report_in_flight, runner)


_worker_files: dict[int, int] = {}  # on the master: worker index -> its history file's fd


def _keep_history(index: int, lines: list[bytes]) -> None:
    if index not in _worker_files:
        path = worker_history(Path(_HISTORY_PATH), index)
        _worker_files[index] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_worker_files[index], b"".join(lines))


def _send_history(runner) -> None:
    if _outbox:
        lines = _outbox[:]
        del _outbox[:]
        runner.send_message(HISTORY, lines)


def _report_in_flight(runner) -> None:
    while True:
        gevent.sleep(REPORT_EVERY_S)
        if _Clock.t0 is None:
            continue
        _send_history(runner)  # before the report below: the master has it all once it sees "done"
        done = elapsed_s() >= Plan.total_s and _Clock.in_flight == 0
        if done:
            # This worker's request stats first, on the same connection, so the master has them all
            # before it sees "drained" and stops. Locust itself sends them every 3 s and once more on
            # quit, waiting only 0.5 s for that last one: on a loaded machine it came too late and
            # the master's CSVs missed up to 3 s of requests (1,401 of 1,784 in one CI run).
            runner._send_stats()
        runner.send_message(IN_FLIGHT, {"elapsed_s": elapsed_s(), "in_flight": _Clock.in_flight})


def user_number(local_number: int, runner) -> int:
    """This user's place among all users: in a worker, its k-th user is k × workers + its index."""
    if isinstance(runner, WorkerRunner):
        number = local_number * Plan.workers + runner.worker_index
    else:
        number = local_number
    if number >= Plan.users:
        raise RuntimeError(f"user {number} of {Plan.users}: Locust gave this process more users than its share")
    return number


class PeerUser(FastHttpUser):
    """One peer of the stack: its token, its tenant, its two nodes."""

    network_timeout = REQUEST_TIMEOUT_S
    connection_timeout = min(5.0, REQUEST_TIMEOUT_S)
    concurrency = 20  # connections per user: its sends overlap when the stack answers slowly
    _counter = itertools.count()  # user i is PEERS[i]

    def __init__(self, environment) -> None:
        super().__init__(environment)
        await_plan()
        if _Clock.t0 is None:  # a worker: the master's shape ticks elsewhere; the phases start now
            _Clock.t0 = time.monotonic()
        self.number = user_number(next(PeerUser._counter), environment.runner)
        self.peer = PEERS[self.number % len(PEERS)]
        self.nodes = nodes_for(self.peer.peer_id, self.peer.tenant_id)
        self.headers = {"authorization": f"Bearer {self.peer.token}", "content-type": "application/json"}
        self.rng = random.Random(f"{Plan.seed}:{self.peer.peer_id}")
        self.sent = 0
        self.next_due: float | None = None  # monotonic time of this user's next send
        self.in_flight = 0  # this user's requests awaiting their answer
        self.last_answer_at: float | None = None  # monotonic time of this user's last answer
        self.due_phase: int | None = None  # the phase whose interval set next_due

    # --- pacing ---------------------------------------------------------------------------

    def _schedule(self, now: float) -> int | None:
        """Bring next_due up to date with the running phase; return that phase (None: over)."""
        phase = phase_at(elapsed_s())
        if phase is None:
            return None
        if self.next_due is None:  # first send: a seeded offset within one interval
            self.next_due = now + self.rng.random() * interval_s(phase)
        elif phase != self.due_phase and self.due_phase is not None:
            # keep this user's place in its cycle, in units of the new interval
            left = min(max((self.next_due - now) / interval_s(self.due_phase), 0.0), 1.0)
            self.next_due = now + left * interval_s(phase)
        self.due_phase = phase
        return phase

    def wait_time(self) -> float:
        """Sleep until the next send, but wake at a phase boundary to rescale to the new rate."""
        now = time.monotonic()
        phase = self._schedule(now)
        if phase is None or _Clock.t0 is None:
            return IDLE_WAIT_S
        until_phase_end = _Clock.t0 + Plan.phase_ends[phase] - now + 0.001
        return max(min(self.next_due - now, until_phase_end), 0.0)

    @task
    def submit(self) -> None:
        now = time.monotonic()
        phase = self._schedule(now)
        if phase is None or now < self.next_due:
            return  # woken at a phase boundary, not due yet
        # Open loop: the request runs in its own greenlet, so a slow answer under overload does
        # not hold back this user's next send (a closed loop would offer less exactly when the
        # stack is slowest, and the overload would measure the stack's latency, not its refusals).
        gevent.spawn(self.send, Plan.phases[phase]["name"])
        # Next slot one interval on; a user whose greenlet was starved of CPU catches up by at
        # most one interval.
        self.next_due = max(self.next_due + interval_s(phase), time.monotonic() - interval_s(phase))

    # --- one intent -------------------------------------------------------------------------

    def send(self, phase_name: str) -> None:
        peer = self.peer
        n = self.sent
        self.sent += 1
        key = f"{Plan.key_prefix}-{peer.peer_id}-{n}"
        node_id = self.nodes[n % 2]
        body = orjson.dumps({
            "intent_id": key, "tenant_id": peer.tenant_id, "peer_id": peer.peer_id, "node_id": node_id,
            "action": "block_ip", "action_class": "A1", "idempotency_key": key,
            "parameters": {"ip": f"10.{(n >> 8) & 255}.{n & 255}.{self.number % 250 + 1}"},
        })
        base = {"key": key, "tenant_id": peer.tenant_id, "peer_id": peer.peer_id, "node_id": node_id}
        self._drop_stale_connections()
        record(INVOKE, peer.peer_id, {**base, "action_class": "A1", "phase": phase_name})
        completed = False
        _Clock.in_flight += 1
        self.in_flight += 1
        try:
            with self.client.post("/v1/intents", data=body, headers=self.headers,
                                  name=f"submit[{phase_name}]", catch_response=True) as resp:
                type_, value = classify(resp)
                record(type_, peer.peer_id, {**base, **value, "phase": phase_name})
                completed = True
                if type_ == OK:
                    resp.success()
                elif type_ == FAIL:
                    resp.failure(value["reason_code"])
                else:
                    resp.failure(f"NO_ANSWER {value['error']}")
        finally:
            _Clock.in_flight -= 1
            self.in_flight -= 1
            self.last_answer_at = time.monotonic()
            if not completed:  # killed or crashed mid-request: the outcome is unknown
                record(INFO, peer.peer_id, {**base, "error": "interrupted before an answer", "phase": phase_name})


    def _drop_stale_connections(self) -> None:
        """Close this user's connections when they have idled past ``STALE_AFTER_S`` (none of its
        requests in flight), so the next request opens a fresh one."""
        idle = self.last_answer_at is not None and time.monotonic() - self.last_answer_at > STALE_AFTER_S
        if idle and self.in_flight == 0:
            self.client.client.clientpool.close()


def classify(resp) -> tuple[str, dict[str, Any]]:
    """ok (202 accepted), fail (a refusal with a reason code) or info (no usable answer)."""
    error = getattr(resp, "error", None)
    status = int(getattr(resp, "status_code", 0) or 0)
    if status == 0:
        return INFO, {"status": 0, "error": f"{type(error).__name__}: {error}"[:300] if error else "no response"}
    try:
        payload = orjson.loads(resp.content or b"null")
    except (orjson.JSONDecodeError, Exception):  # body unreadable: cut off mid-answer
        payload = None
    if status == 202:
        payload = payload if isinstance(payload, dict) else {}
        return OK, {"status": 202, "duplicate": bool(payload.get("duplicate", False)), "seq": payload.get("stream_seq")}
    if status >= 400 and isinstance(payload, dict) and payload.get("reason_code"):
        return FAIL, {"status": status, "reason_code": str(payload["reason_code"])}
    return INFO, {"status": status, "error": f"HTTP {status} without a reason code"}
