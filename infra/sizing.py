"""Memory of each function, in MB: the stack configures them from here, and the cost model
(bench/scale.py) prices measured durations with the same numbers."""

from __future__ import annotations

MEMORY_MB = {
    "api": 1024,
    "step_runner": 1024,
    "stream": 1024,
    "projector": 512,
    "reconciler": 512,
}
