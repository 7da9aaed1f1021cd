"""Threat: a step whose outputs are larger than a DynamoDB item fails the run with DynamoDB's
raw ValidationException text (and, before that, a retried Lambda)."""

from __future__ import annotations

from workflow_runs.models import Status
from workflow_runs_step_runner.outputs import MAX_OUTPUT_BYTES

from tests.unit.step_runner.test_runner import Bench


def test_a_one_megabyte_transform_output_fails_the_step_with_its_size_and_the_limit(bench: Bench):
    # Given a transform that renders 1 MB
    run_id = bench.new_run([{"id": "big", "type": "transform", "config": {"output": "{{ 'x' * 1000000 }}"}}])

    # When it runs
    reply = bench.invoke(run_id)

    # Then the step and the run fail, saying how large the outputs were and what the limit is
    expected = f"outputs too large (1000012 bytes; the limit is {MAX_OUTPUT_BYTES})"
    assert reply["next"] == "failed"
    run = bench.run(run_id)
    assert run.status is Status.FAILED and run.error.message == expected and run.error.step_id == "big"
    assert [(a.status, a.outputs) for a in run.activity_runs] == [(Status.FAILED, {"error": expected})]


def test_outputs_just_under_the_limit_are_stored(bench: Bench):
    size = MAX_OUTPUT_BYTES - len('{"value":""}')
    run_id = bench.new_run([{"id": "fits", "type": "transform", "config": {"output": f"{{{{ 'y' * {size} }}}}"}}])
    assert bench.invoke(run_id)["next"] == "done"
    assert bench.run(run_id).activity_runs[0].outputs == {"value": "y" * size}
