"""The load test's clients, run in a child process (`python -m tests.reliability.load_clients
<config JSON>`) so that the server under test, in the test's own process, does not share its
interpreter lock with them. Prints one JSON object: counts, latencies and errors."""

from __future__ import annotations

import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.integration.sse_helpers import parse_frames

RUNS = "/api/v1/workflow-runs"
REQUEST_WORKERS = 32


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"list": [], "get": [], "sse-first": []})
    errors: list[str] = field(default_factory=list)
    streams: int = 0
    events: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def took(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


def sse_client(base: str, headers: dict, workflow_id: str, stop_at: float, tally: Tally, seed: int) -> None:
    """Start a run over execute/stream and follow it to its closing event; again until time."""
    with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(60.0)) as client:
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            started = time.perf_counter()
            first = None
            closing = None
            try:
                with client.stream("POST", f"{RUNS}/execute/stream",
                                   json={"workflowId": workflow_id, "inputs": {"n": seed * 1000 + n}}) as response:
                    if response.status_code != 200:
                        tally.error(f"execute/stream {response.status_code}: {response.read()[:200]!r}")
                        return
                    for frame in parse_frames(response.iter_lines()):
                        if frame.event == "ping":
                            continue
                        if first is None:
                            first = time.perf_counter() - started
                        with tally.lock:
                            tally.events += 1
                        if frame.event in ("result", "error"):
                            closing = frame
                            break
            except httpx.HTTPError as exc:
                tally.error(f"execute/stream: {type(exc).__name__}: {exc}")
                return
            if closing is None or closing.event != "result":
                tally.error(f"a stream ended without its result: {closing and closing.data}")
                return
            tally.took("sse-first", first or 0.0)
            with tally.lock:
                tally.streams += 1


def paced_requests(base: str, headers: dict, workflow_id: str, run_ids: list[str], stop_at: float,
                   tally: Tally, rps: int) -> int:
    """List and get, alternately, at `rps` (scheduled, not closed-loop: a slow
    answer does not slow the arrivals, it queues them, as real traffic would)."""
    rng = random.Random(7)
    client = httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(60.0),
                          limits=httpx.Limits(max_connections=REQUEST_WORKERS))

    def one(i: int) -> None:
        if i % 2:
            kind, path, params = "list", RUNS, rng.choice([
                {"limit": 10}, {"workflowId": workflow_id, "limit": 20}, {"status": "completed", "limit": 5},
                {"workflowId": workflow_id, "status": "running"}, {"search": "loa", "page": 2, "limit": 5}])
        else:
            kind, path, params = "get", f"{RUNS}/{rng.choice(run_ids)}", None
        started = time.perf_counter()
        try:
            response = client.get(path, params=params)
        except httpx.HTTPError as exc:
            tally.error(f"{kind}: {type(exc).__name__}: {exc}")
            return
        tally.took(kind, time.perf_counter() - started)
        if response.status_code != 200 or response.json().get("success") is not True:
            tally.error(f"{kind} {path} {params}: {response.status_code} {response.text[:200]}")

    sent = 0
    interval = 1.0 / rps
    with client, ThreadPoolExecutor(max_workers=REQUEST_WORKERS, thread_name_prefix="load") as pool:
        next_at = time.monotonic()
        while next_at < stop_at:
            pool.submit(one, sent)
            sent += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def main(config: dict) -> dict:
    base, headers = config["base"], {"Authorization": f"Bearer {config['token']}"}
    tally = Tally()
    started = time.monotonic()
    stop_at = started + config["duration"]
    with ThreadPoolExecutor(max_workers=max(1, config["sse_clients"]), thread_name_prefix="sse") as sse_pool:
        clients = [sse_pool.submit(sse_client, base, headers, config["workflow_id"], stop_at, tally, i)
                   for i in range(config["sse_clients"])]
        sent = paced_requests(base, headers, config["workflow_id"], config["run_ids"], stop_at, tally,
                              config["rps"])
        for future in clients:
            future.result(timeout=180)
    elapsed = time.monotonic() - started
    return {
        "duration_s": round(elapsed, 1), "requests_sent": sent, "achieved_rps": round(sent / elapsed, 1),
        "answered": len(tally.latencies["list"]) + len(tally.latencies["get"]),
        "sse_streams": tally.streams, "sse_events": tally.events,
        **{f"{kind}_p50_ms": round(statistics.median(v) * 1000, 1) for kind, v in tally.latencies.items() if v},
        **{f"{kind}_p99_ms": round(percentile(v, 99) * 1000, 1) for kind, v in tally.latencies.items() if v},
        "errors": tally.errors[:50], "error_count": len(tally.errors),
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
