"""Sizes of the functions and the guards around them. The stack configures them from here,
and the cost model (bench/scale.py) prices measured durations with the same memory numbers.
"""

from __future__ import annotations

# Sized from measurement (bench/cost_model.py, section 10; the table is in docs/decisions.md,
# 2026-12-07): every function spends ≥ 90 % of its billed time waiting on I/O (DynamoDB, the
# model, the run it waits on or streams), which costs in proportion to memory and runs no
# faster with more of it. The API too (256 MB, 2026-12-07): a blocking execute holds it for
# the whole run (11 s for an AI workflow: $73 a million runs at 512 MB, half at 256), while
# its requests that do not wait (list, get, dashboard) spend tens of milliseconds of CPU,
# which 256 MB at most doubles (a seventh of a vCPU instead of two sevenths).
MEMORY_MB = {
    "api": 256,
    "step_runner": 256,
    "stream": 256,
    "projector": 256,
    "reconciler": 512,
}

# Reserved concurrency, when the stage does not name its own (`stepRunnerConcurrency`, …).
# Reserving guarantees the step runner and the projector their share however many stream
# viewers arrive, and caps each at it. The account keeps at least 100 unreserved: these
# need an account concurrency quota of at least sum + 100 (default quota: 1000).
RESERVED_CONCURRENCY = {
    # One invocation per running step; a run holds at most one at a time.
    "step_runner": 100,
    # Concurrent batches = shards of the runs table's stream × PARALLELIZATION_FACTOR.
    "projector": 20,
    # A settling sweep every 5 minutes and the odd failed-execution event.
    "reconciler": 2,
    # Each open SSE stream holds one stream function for its life (the API's and the
    # function URL's together): the cap on streams open at once.
    "stream": 100,
}

# Streams one tenant may hold open at once (the stream function's STREAM_MAX_PER_TENANT,
# refused with 429 beyond it); a stage with many tenants lowers it below the stream cap.
STREAM_MAX_PER_TENANT = 100

# Batches the projector processes at once per shard of the runs table's stream (1–10);
# records of one run (one partition key) stay in order.
PROJECTOR_PARALLELIZATION_FACTOR = 4

# X-Ray: each REST API stage's own sampling rule (infra/constructs/api.py) records this
# percentage of requests and no per-second reservoir (the default rule's first request each
# second is every request below one a second). Its priority sits above the default's (10000).
XRAY_SAMPLED_PERCENT = 5
XRAY_RULE_PRIORITY = 1000
