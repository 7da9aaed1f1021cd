"""Contention: one busy tenant on a DynamoDB that behaves as AWS does under load.

DynamoDB Local serialises every request: it never cancels a transaction because another one
touches the same item, and never throttles. In AWS both happen, and most to exactly this
project's hot spots: every status change of every run of a tenant moves the same three
counter items (the tenant's, the workflow's, the workflow name's) in its TransactWriteItems,
so concurrent runs of one tenant contend on them all the time. Code that treats a cancelled
transaction as "someone else changed the run" (a lost race), or lets a throttled request
fail a request or a step, passes every local test and fails in AWS.

So `workflow-runs dev` (`LocalRuntime`: the session's DynamoDB Local, the local orchestrator
running the real step runner, the stream poller feeding the real projector, both apps under
uvicorn) runs here with `workflow_runs_dev.faults.FaultInjector` between it and DynamoDB:
- a transaction touching an item that another transaction has in flight is cancelled with
  `TransactionConflict` on the overlapping entries (TransactionCanceledException, per-entry
  CancellationReasons), and a single write to such an item fails with
  TransactionConflictException. Nearly every transaction touches the counters: with one
  counter item per tenant (the store of 2026-12) this alone cancels about half of them, with
  sharded counters about one in seven (the in-flight window, measured at the client, is 13 ms
  at the median and 45 ms at p90 on the 2-core machine: a TransactWriteItems' latency in AWS,
  longer in the tail);
- of the transactions that get past that, 20% are cancelled with `TransactionConflict` on one
  entry drawn at random, so conflicts reach the run and activity items too, not only counters;
- 10% of all requests are throttled: ProvisionedThroughputExceededException or
  ThrottlingException (botocore retries both, with backoff, up to the client's attempts),
  and, for a transaction, half of the time a TransactionCanceledException with a
  `ThrottlingError` reason (not retried by botocore), as an on-demand table answers.
Refused requests never reach DynamoDB Local: they change nothing.

100 runs of ONE tenant (1,000 with SOAK=1), a quarter each of four workflows, are started at
once through `POST /execute` (which answers 202 at once here): runs that complete, runs
that fail (a `fail` step), runs that wait (a `wait` step, then complete), and runs cancelled
through `POST /cancel` while their `wait` step runs. Then, after polling (with a deadline)
until every run has ended or its execution has ended without ending it:
- no request is answered 500; execute answers 202 (or 200), or 503 `Unavailable` when the
  store stayed throttled or contended through every retry (counted, allowed: such a run
  must not exist);
- every run ends in exactly one terminal status (one terminal change on the table's stream),
  the one its workflow leads to, and none is left non-terminal;
- each run's event log, replayed over SSE from its start, has every status change of the run
  and of its activity runs once (compared with the table's stream), nothing doubled, and
  exactly one closing event, last, matching the run's final status; every activity run
  state GET shows is in it;
- every workflow's dashboard equals a recount of its runs by status (read by GET), and the
  tenant-wide list's `pagination.total`, per status too, equals the runs it holds; the list
  shows exactly the runs execute accepted.
The checks read with the injector suspended (they are the instrument, not the subject), and
the projector's event-log writes are spared (see conftest.py): the subject is the run store.

On the first store of 2026-12 this suite failed, as it should: that store read every
cancelled transaction as a lost race and let a throttled transaction fail the request, so
most executes answered 500, runs ended `failed` ("keeps changing under the step runner") or
stayed `running` after their execution ended, and a run whose execute answered 500 could exist
and be counted. docs/reliability.md ("Contention harness") has the figures. The rebuilt store
(workflow_runs/store/dynamo.py) passes it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from workflow_runs.models import WorkflowDefinition

from tests.integration.sse_helpers import Frame, events_of, read_stream
from tests.reliability.support import soak, stream_records

pytestmark = pytest.mark.dynamodb_local

RUN_COUNT = soak(100, 1000)
TENANT = "contention"
RUNS = "/api/v1/workflow-runs"
TERMINAL = ("completed", "failed", "cancelled")
STATUSES = ("scheduled", "running", "completed", "failed", "cancelled", "waiting")
# How long the runs may take to end, from the first execute (the local orchestrator runs 8
# executions at once; a run whose execution has ended unended is given up on at once).
DEADLINE_SECONDS = soak(90, 900)
CANCEL_WAIT_SECONDS = soak(30, 300)  # the cancelled runs' wait: long enough to be cancelled in it
REPLAY_SECONDS = 5  # a replay of an ended run that has not closed by then never will
OPEN_REPLAY_SECONDS = 1.5  # a run left open has no closing event to wait for: its log so far
CLIENT_THREADS = 16


@dataclass(frozen=True)
class Kind:
    name: str
    final: str  # the status its workflow leads to
    steps: tuple[dict[str, Any], ...]


KINDS = (
    Kind("completes", "completed", ({"id": "first", "type": "transform", "config": {"output": "one"}},
                                    {"id": "last", "type": "transform", "config": {"output": "two"}})),
    Kind("fails", "failed", ({"id": "first", "type": "transform", "config": {"output": "one"}},
                             {"id": "guard", "type": "fail", "config": {"message": "guarded"}})),
    Kind("waits", "completed", ({"id": "first", "type": "transform", "config": {"output": "one"}},
                                {"id": "pause", "type": "wait", "config": {"seconds": 1}},
                                {"id": "last", "type": "transform", "config": {"output": "two"}})),
    Kind("is cancelled", "cancelled", ({"id": "first", "type": "transform", "config": {"output": "one"}},
                                       {"id": "pause", "type": "wait", "config": {"seconds": CANCEL_WAIT_SECONDS}},
                                       {"id": "never", "type": "transform", "config": {"output": "two"}})),
)
CANCELLED = KINDS[3]


@dataclass
class Contention:
    """What happened, as the API and the table's stream tell it (gathered once per module)."""

    workflows: dict[str, str] = field(default_factory=dict)  # kind name → workflow id
    runs: dict[str, Kind] = field(default_factory=dict)  # accepted run id → its kind
    executes: Counter[int] = field(default_factory=Counter)  # execute answers by status code
    unavailable: Counter[str] = field(default_factory=Counter)  # 503s by kind
    server_errors: list[str] = field(default_factory=list)  # every 5xx but 503: "<request> → <status> <body>"
    cancels: Counter[str] = field(default_factory=Counter)  # cancel results by status
    stuck: dict[str, str] = field(default_factory=dict)  # run id → why it was given up on
    final: dict[str, dict] = field(default_factory=dict)  # run id → the run GET shows at the end
    replays: dict[str, list[Frame]] = field(default_factory=dict)  # run id → its events, from the start
    run_changes: dict[str, list[str]] = field(default_factory=dict)  # run id → statuses the table went through
    activity_changes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # run id → (activity, status)
    dashboards: dict[str, dict] = field(default_factory=dict)  # kind name → dashboard reply
    workflow_totals: dict[str, int] = field(default_factory=dict)  # kind name → list total
    tenant_total: int = -1
    status_totals: dict[str, int] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)  # every run id the tenant-wide list shows
    faults: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    checked_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


# ------------------------------------------------------------------ driving the tenant


def _call(outcome: Contention, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
    """One API request; a 5xx other than 503 (or no answer) is recorded, not raised. A GET whose
    connection broke is sent again (twice at most): over tens of thousands of loopback
    connections a rare reset is the machine's, and a read changes nothing. A POST is not."""
    for attempt in range(3 if method == "GET" else 1):
        try:
            response = client.request(method, path, **kwargs)
            break
        except httpx.TransportError as exc:
            error = exc
    else:
        with outcome.lock:
            outcome.server_errors.append(f"{method} {path} → {type(error).__name__} ({attempt + 1} attempts)")
        return None
    if response.status_code >= 500 and response.status_code != 503:
        with outcome.lock:
            outcome.server_errors.append(f"{method} {path} → {response.status_code} {response.text[:200]}")
    return response


def _execute(outcome: Contention, client: httpx.Client, kind: Kind) -> None:
    response = _call(outcome, client, "POST", f"{RUNS}/execute", json={"workflowId": outcome.workflows[kind.name]})
    with outcome.lock:
        outcome.executes[response.status_code if response is not None else 0] += 1
        if response is not None and response.status_code in (200, 202):
            outcome.runs[response.json()["workflowRun"]["id"]] = kind
        elif response is not None and response.status_code == 503:
            outcome.unavailable[kind.name] += 1


def _look(outcome: Contention, client: httpx.Client, orchestrator: Any, run_id: str, deadline: float) -> None:
    """One look at a run not seen ended yet: note its end, cancel it while it waits (the
    cancelled kind), or give up on it when nothing will move it any more."""
    # Asked before the GET: an execution found over has made its last write before the GET reads.
    try:
        orchestrator.join(run_id, timeout=0)
        execution_over = True
    except TimeoutError:
        execution_over = False
    response = _call(outcome, client, "GET", f"{RUNS}/{run_id}")
    if response is None or response.status_code != 200:
        return
    run = response.json()["workflowRun"]
    with outcome.lock:
        if run["status"] in TERMINAL:
            outcome.final[run_id] = run
            return
        if execution_over:
            # Its execution has ended (the worker returned, the reconciler included) and the run
            # has not: nothing moves it again but the reconciler's sweep, 15 minutes on.
            outcome.stuck[run_id] = f"{run['status']} after its execution ended ({orchestrator.describe(run_id)})"
            return
        if time.monotonic() > deadline:
            outcome.stuck[run_id] = f"{run['status']} at the deadline (execution {orchestrator.describe(run_id)})"
            return
    if outcome.runs[run_id] is CANCELLED and run["status"] == "waiting":
        cancel = _call(outcome, client, "POST", f"{RUNS}/cancel", json={"runIds": [run_id], "reason": "contention"})
        if cancel is not None and cancel.status_code == 200:
            with outcome.lock:
                outcome.cancels[cancel.json()["results"][0]["status"]] += 1


def drive(runtime: Any) -> Contention:
    outcome = Contention()
    with runtime.faults.suspended():  # the set-up is not what is tested
        for kind in KINDS:
            workflow_id = outcome.workflows[kind.name] = str(uuid.uuid4())
            runtime.service.put_workflow(TENANT, workflow_id, WorkflowDefinition.model_validate(
                {"name": f"Contention: {kind.name}", "steps": list(kind.steps)}))
    plan = [kind for kind in KINDS for _ in range(RUN_COUNT // len(KINDS))]
    random.Random(7).shuffle(plan)

    # A connection per request: uvicorn closes one after a 500, and a request sent on it meanwhile
    # would fail for the client's reason, not the server's.
    limits = httpx.Limits(max_connections=CLIENT_THREADS * 2, max_keepalive_connections=0)
    with httpx.Client(base_url=runtime.internal_url, headers={"X-Tenant-Id": TENANT}, timeout=60,
                      limits=limits) as client, ThreadPoolExecutor(CLIENT_THREADS) as pool:
        began = time.monotonic()
        deadline = began + DEADLINE_SECONDS
        starting = [pool.submit(_execute, outcome, client, kind) for kind in plan]
        # Watch while runs are started and after: every run not yet ended, again and again.
        while True:
            with outcome.lock:
                open_runs = [r for r in outcome.runs if r not in outcome.final and r not in outcome.stuck]
            all_started = all(f.done() for f in starting)
            if all_started and not open_runs:
                break
            list(pool.map(lambda run_id: _look(outcome, client, runtime.orchestrator, run_id, deadline), open_runs))
            if time.monotonic() > deadline + 30:
                raise AssertionError("the watch itself overran its deadline")
            time.sleep(0.2)
        for future in starting:
            future.result()
        outcome.seconds = time.monotonic() - began
        outcome.faults = runtime.faults.stats

        # What the checks read, with the injector suspended: the runs, their event logs, the
        # table's stream, the counts
        assert runtime.wait_projected(60), "the stream poller did not catch up"
        with runtime.faults.suspended():
            _gather(outcome, runtime, client, pool)
        outcome.checked_seconds = time.monotonic() - began - outcome.seconds
    return outcome


def _gather(outcome: Contention, runtime: Any, client: httpx.Client, pool: ThreadPoolExecutor) -> None:
    def final(run_id: str) -> tuple[str, dict]:
        return run_id, client.get(f"{RUNS}/{run_id}").raise_for_status().json()["workflowRun"]

    def replay(run_id: str) -> tuple[str, list[Frame]]:
        began = time.monotonic()
        limit = REPLAY_SECONDS if outcome.final[run_id]["status"] in TERMINAL else OPEN_REPLAY_SECONDS
        _, frames = read_stream(client, "GET", f"{RUNS}/{run_id}/events", until=lambda frames: (
            frames[-1].event in ("result", "error") or time.monotonic() - began > limit))
        return run_id, frames

    outcome.final = dict(pool.map(final, outcome.runs))
    outcome.replays = dict(pool.map(replay, outcome.runs))
    outcome.run_changes, outcome.activity_changes = _stream_history(runtime.store)
    for kind in KINDS:
        workflow_id = outcome.workflows[kind.name]
        outcome.dashboards[kind.name] = client.get(f"{RUNS}/dashboard/{workflow_id}").raise_for_status().json()
        outcome.workflow_totals[kind.name] = _total(client, {"workflowId": workflow_id})
    outcome.tenant_total = _total(client, {})
    outcome.status_totals = {status: _total(client, {"status": status}) for status in STATUSES}
    page = 1
    while True:
        data = client.get(RUNS, params={"limit": 100, "page": page}).raise_for_status().json()["data"]
        outcome.listed += [run["id"] for run in data]
        if len(data) < 100:
            break
        page += 1


def _total(client: httpx.Client, params: dict[str, str]) -> int:
    return client.get(RUNS, params={**params, "limit": 1}).raise_for_status().json()["pagination"]["total"]


def _stream_history(store: Any) -> tuple[dict[str, list[str]], dict[str, list[tuple[str, str]]]]:
    """Every status a run item and an activity item went through, in stream order, from the
    runs table's DynamoDB stream: what really happened, whatever any writer believed."""
    runs: dict[str, list[str]] = defaultdict(list)
    activities: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in stream_records(store)[1]:
        item = record["dynamodb"]
        sort_key = item["Keys"]["SK"]["S"]
        if record["eventName"] == "REMOVE" or not (sort_key == "R" or sort_key.startswith("R#A#")):
            continue
        new = item["NewImage"]["status"]["S"]
        if item.get("OldImage", {}).get("status", {}).get("S") == new:
            continue
        run_id = item["Keys"]["PK"]["S"].removeprefix("RUN#")
        if sort_key == "R":
            runs[run_id].append(new)
        else:
            activities[run_id].append((item["NewImage"]["id"]["S"], new))
    return runs, activities


@pytest.fixture(scope="module")
def contention(contended_runtime: Any) -> Contention:
    outcome = drive(contended_runtime)
    print(f"\ncontention: {len(outcome.runs)} runs accepted of {RUN_COUNT}, watched to their end in "
          f"{outcome.seconds:.1f} s, checked in {outcome.checked_seconds:.1f} s; "
          f"execute answers {dict(outcome.executes)}; cancels {dict(outcome.cancels)}; "
          f"stuck {len(outcome.stuck)}; faults injected {outcome.faults}")
    return outcome


# ------------------------------------------------------------------ the checks

Problem = tuple[str, str]  # (what kind of problem, the case)


def summary(problems: list[Problem], limit: int = 8) -> str:
    """`{kind of problem: how many}`, then the first cases."""
    tally = Counter(what for what, _ in problems)
    cases = "\n  ".join(f"{what}: {case}" for what, case in problems[:limit])
    more = f"\n  … and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{dict(tally.most_common())}\n  {cases}{more}"


@pytest.mark.timeout(soak(240, 1500))
def test_no_request_is_answered_500_and_execute_is_accepted_or_unavailable(contention: Contention):
    # 503 Unavailable (the store throttled through every retry) is allowed; anything else is not
    problems = [(_route(e), e) for e in contention.server_errors]
    assert set(contention.executes) <= {200, 202, 503} and not problems, (
        f"execute answered {dict(contention.executes)} (of {RUN_COUNT}; 0: no answer), 503 by kind "
        f"{dict(contention.unavailable)}; 5xx other than 503, and requests not answered: " + summary(problems))


def _route(error: str) -> str:
    """`POST /api/v1/workflow-runs/execute → 500 …` as its route and status, ids left out."""
    request, _, answer = error.partition(" → ")
    method, path = request.split(" ", 1)
    parts = ["{id}" if len(p) == 36 and p.count("-") == 4 else p for p in path.split("/")]
    return f"{method} {'/'.join(parts)} → {answer.split(' ')[0]}"


@pytest.mark.timeout(soak(240, 1500))
def test_every_run_ends_in_exactly_one_terminal_status_the_one_its_workflow_leads_to(contention: Contention):
    problems: list[Problem] = []
    for run_id, kind in contention.runs.items():
        run = contention.final[run_id]
        terminal_changes = [s for s in contention.run_changes.get(run_id, []) if s in TERMINAL]
        if run_id in contention.stuck:
            problems.append((f"'{kind.name}' run left {run['status']}", f"{run_id} {contention.stuck[run_id]}"))
        elif run["status"] != kind.final:
            problems.append((f"'{kind.name}' run ended {run['status']}",
                             f"{run_id}: {(run.get('error') or {}).get('message')}"))
        if len(terminal_changes) != 1 and run["status"] in TERMINAL:
            problems.append(("terminal changes on the stream ≠ 1", f"{run_id}: {terminal_changes}"))
    assert problems == [], (f"of {len(contention.runs)} runs (cancels answered {dict(contention.cancels)}): "
                            + summary(problems))


@pytest.mark.timeout(soak(240, 1500))
def test_each_run_replays_every_change_once_and_one_closing_event_that_matches_its_end(contention: Contention):
    problems: list[Problem] = []
    for run_id, kind in contention.runs.items():
        problems += [(what, f"'{kind.name}' {run_id}: {case}") for what, case in replay_problems(
            events_of(contention.replays[run_id]), contention.final[run_id],
            contention.run_changes.get(run_id, []), contention.activity_changes.get(run_id, []))]
    assert problems == [], f"of {len(contention.runs)} runs: " + summary(problems)


def replay_problems(events: list[Frame], run: dict, run_changes: list[str],
                    activity_changes: list[tuple[str, str]]) -> list[Problem]:
    """What is wrong with one run's replayed event log, against the table's stream and GET."""
    problems: list[Problem] = []
    statuses = [e.content["status"] for e in events if e.event == "workflow-run"]
    if statuses != run_changes:
        problems.append(("run changes differ from the table's", f"log {statuses}, table {run_changes}"))
    steps = [(e.content["activityRunId"], e.content["status"]) for e in events if e.event == "activity-run"]
    doubled = [step for step, n in Counter(steps).items() if n > 1]
    if doubled:
        problems.append(("activity change doubled", str(doubled)))
    lost = [step for step in activity_changes if step not in steps]
    if lost:
        problems.append(("activity change lost", str(lost)))
    unseen = [(a["id"], a["status"]) for a in run["activityRuns"] if (a["id"], a["status"]) not in steps]
    if unseen:
        problems.append(("activity state shown by GET not in the log", str(unseen)))
    closing = [e for e in events if e.event in ("result", "error")]
    if run["status"] not in TERMINAL:  # left open: the terminal check reports it; its log must not close
        if closing:
            problems.append(("a closing event for a run not ended", f"{closing[0].event}, the run is {run['status']}"))
    elif len(closing) != 1:
        problems.append((f"{len(closing)} closing events", f"the run is {run['status']}"))
    elif closing[0] is not events[-1]:
        problems.append(("the closing event is not the last", str([e.event for e in events])))
    else:
        ended = "completed" if closing[0].event == "result" else (closing[0].data.get("details") or {}).get("status")
        if ended != run["status"]:
            problems.append(("the closing event disagrees with the run", f"it says {ended}, the run is {run['status']}"))
    return problems


@pytest.mark.timeout(soak(240, 1500))
def test_dashboards_equal_a_recount_and_the_tenant_list_holds_exactly_the_runs(contention: Contention):
    problems: list[Problem] = []
    by_kind: dict[str, Counter[str]] = {kind.name: Counter() for kind in KINDS}
    for run_id, kind in contention.runs.items():
        by_kind[kind.name][contention.final[run_id]["status"]] += 1
    for kind in KINDS:
        recount = {status: by_kind[kind.name][status] for status in STATUSES}
        counts = contention.dashboards[kind.name]["counts"]
        if counts != recount:
            problems.append(("dashboard ≠ recount", f"'{kind.name}': " + ", ".join(
                f"{s} {counts.get(s)} (recount {recount[s]})" for s in STATUSES if counts.get(s) != recount[s])))
        if contention.workflow_totals[kind.name] != sum(recount.values()):
            problems.append(("workflow list total ≠ runs",
                             f"'{kind.name}': {contention.workflow_totals[kind.name]}, runs {sum(recount.values())}"))
    everything = sum(by_kind.values(), Counter())
    if contention.tenant_total != len(contention.runs):
        problems.append(("tenant list total ≠ runs", f"{contention.tenant_total}, runs {len(contention.runs)}"))
    for status in STATUSES:
        if contention.status_totals[status] != everything[status]:
            problems.append(("tenant list total by status ≠ runs",
                             f"{status}: {contention.status_totals[status]}, runs {everything[status]}"))
    phantoms = set(contention.listed) - set(contention.runs)
    if phantoms:
        problems.append(("listed runs no execute accepted", f"{len(phantoms)}, e.g. {sorted(phantoms)[:3]}"))
    missing = set(contention.runs) - set(contention.listed)
    if missing:
        problems.append(("accepted runs missing from the list", f"{len(missing)}, e.g. {sorted(missing)[:3]}"))
    assert problems == [], summary(problems, limit=20)
