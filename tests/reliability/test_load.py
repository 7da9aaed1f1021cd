"""Load on `workflow-runs dev`, loopback only: 50 SSE clients each starting and following runs
to their closing event, while list and get requests arrive at 100 per second, for 5 s (60 s
with SOAK=1). The server runs in this process (LocalRuntime); the clients run in a child
process (tests/reliability/load_clients.py), so the two do not share one interpreter lock.

Asserted: no request fails (no 5xx, no transport error, every SSE stream ends with its run's
`result`), every request is answered, and memory stays put (see MEMORY_SLACK_MIB). Latencies
(p50/p99) and the rate achieved are printed, never asserted: on a shared 2-core machine they
describe the machine as much as the code; docs/benchmarks.md tracks performance.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from workflow_runs.models import WorkflowDefinition
from workflow_runs.service import ExecuteRequest

from tests.reliability.support import soak

pytestmark = pytest.mark.dynamodb_local

ROOT = Path(__file__).resolve().parents[2]
DURATION_SECONDS = soak(5, 60)
SSE_CLIENTS = 50
REQUESTS_PER_SECOND = 100
# Resident memory of this process (server, orchestrator, poller, DynamoDB clients) may grow this
# much between a warmed-up start and the end: allocator arenas, pools and caches settle within
# a few MiB; a leak per request or per stream (thousands of each here) would exceed it.
MEMORY_SLACK_MIB = soak(64, 96)

LOAD_WORKFLOW = {
    "name": "Load",
    "inputs": [{"name": "n", "type": "integer", "required": False, "default": 1}],
    "steps": [
        {"id": "prepare", "type": "transform", "config": {"output": "run {{ inputs.n }}"}},
        # Runs that last: the clients follow open runs, not a stream of instant ones.
        {"id": "pause", "type": "wait", "config": {"seconds": 2}},
        {"id": "finish", "type": "transform", "config": {"output": {"done": True}}},
    ],
}


def rss_mib() -> float:
    """Resident set size of this process (the server runs in it), from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_clients(runtime: Any, workflow_id: str, run_ids: list[str], duration: float) -> dict:
    config = {"base": runtime.public_url, "token": runtime.token, "workflow_id": workflow_id, "run_ids": run_ids,
              "duration": duration, "sse_clients": SSE_CLIENTS, "rps": REQUESTS_PER_SECOND}
    done = subprocess.run([sys.executable, "-m", "tests.reliability.load_clients", json.dumps(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=duration + 150, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(soak(120, 300))
def test_fifty_sse_clients_and_a_hundred_reads_a_second_fail_nothing_and_leak_no_memory(dev_runtime: Any):
    workflow_id = str(uuid.uuid4())
    dev_runtime.service.put_workflow("dev", workflow_id, WorkflowDefinition.model_validate(LOAD_WORKFLOW))

    # Given some runs to get, and a warmed-up process (imports, pools and caches made)
    run_ids = [dev_runtime.service.start_run("dev", ExecuteRequest(workflow_id=workflow_id, inputs={"n": n})).id
               for n in range(20)]
    warm = run_clients(dev_runtime, workflow_id, run_ids, 2)
    assert warm["error_count"] == 0, warm["errors"]
    gc.collect()
    rss_before, threads_before = rss_mib(), threading.active_count()

    # When 50 SSE clients follow runs while list and get arrive at 100/s, for the duration
    report = run_clients(dev_runtime, workflow_id, run_ids, DURATION_SECONDS)
    gc.collect()
    rss_after, threads_after = rss_mib(), threading.active_count()

    # Then nothing failed …
    report.update(rss_before_mib=round(rss_before, 1), rss_after_mib=round(rss_after, 1),
                  threads_before=threads_before, threads_after=threads_after)
    print("\nload:", json.dumps({k: v for k, v in report.items() if k != "errors"}))
    assert report["error_count"] == 0, report["errors"][:10]
    assert report["answered"] == report["requests_sent"]  # every request answered
    assert report["sse_streams"] >= SSE_CLIENTS  # every client followed a run to its end
    # … and memory stayed put
    assert rss_after - rss_before <= MEMORY_SLACK_MIB, report


