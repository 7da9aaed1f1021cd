"""Write units per run, billed by AWS's rules from the items really written (bench.units),
on DynamoDB Local: a run of N transform steps costs at most 30 + 4N on the runs table and
its indexes (issue "What a real run costs"; the audit found 45/55/90 for N = 1/3/10)."""

from __future__ import annotations

import logging

import pytest

from bench.scale import _runs

pytestmark = pytest.mark.dynamodb_local


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_a_run_of_n_steps_costs_at_most_30_plus_4n_write_units(dynamodb_local_endpoint: str, steps: int):
    logging.disable(logging.WARNING)
    try:
        measured = _runs(dynamodb_local_endpoint, steps, count=2)
    finally:
        logging.disable(logging.NOTSET)

    assert measured["wcu"] <= 30 + 4 * steps, measured
    # No key the tenant's runs share takes more than one write unit per run and shard.
    family, units = measured["hottest"]
    assert units <= 1, (family, units)
