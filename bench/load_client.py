"""The throughput section's load: `python -m bench.load_client URL TOKEN WORKFLOW_ID CONCURRENCY SECONDS`.

Runs in its own process, so the client's work does not share the server's interpreter (and
its GIL). Each of CONCURRENCY threads sends blocking executes back to back until SECONDS have
passed, then finishes the one in flight. Prints one JSON line."""

from __future__ import annotations

import json
import sys
import threading
import time


def main(url: str, token: str, workflow_id: str, concurrency: int, seconds: float) -> dict:
    import httpx

    lock = threading.Lock()
    outcomes: dict[str, int] = {}
    latencies: list[float] = []
    barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker() -> None:
        with httpx.Client(timeout=60.0, headers={"Authorization": f"Bearer {token}"}) as client:
            client.get(f"{url}/health")  # connect before the clock starts
            barrier.wait()
            while time.monotonic() < deadline[0]:
                started = time.perf_counter()
                try:
                    response = client.post(f"{url}/api/v1/workflow-runs/execute", json={"workflowId": workflow_id})
                    body = response.json() if response.status_code in (200, 202) else {}
                    status = (body.get("workflowRun") or {}).get("status") if body else None
                    key = f"{response.status_code} {status}" if status else str(response.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    outcomes[key] = outcomes.get(key, 0) + 1
                    if key == "200 completed":
                        latencies.append(elapsed)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return {"elapsed": time.perf_counter() - started, "outcomes": outcomes, "latencies": latencies}


if __name__ == "__main__":
    url, token, workflow_id, concurrency, seconds = sys.argv[1:6]
    print(json.dumps(main(url, token, workflow_id, int(concurrency), float(seconds))))
