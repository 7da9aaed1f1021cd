"""Threat: a model streams a secret token by token, so each `thinking` chunk alone holds no
secret while the chunks (items, SSE events) join to it in clear."""

from __future__ import annotations

import json
from typing import Any

import pytest
from workflow_runs import keys
from workflow_runs.models import Status
from workflow_runs.secrets import StreamMasker, mask
from workflow_runs_step_runner.steps.llm import LlmStep

from tests.unit.step_runner.test_llm import FakeBedrock
from tests.unit.step_runner.test_runner import Bench, FakeRegistry

SECRET = "sk-live-4f9a"
TEXT = f"<{SECRET}>"


def compositions(text: str):
    """Every way of cutting `text` into non-empty chunks (2^(n-1) of them)."""
    for cuts in range(2 ** (len(text) - 1)):
        chunks, start = [], 0
        for i in range(1, len(text)):
            if cuts >> (i - 1) & 1:
                chunks.append(text[start:i])
                start = i
        yield chunks + [text[start:]]


def test_a_secret_split_every_way_over_chunks_is_masked_as_in_the_whole_text():
    expected = mask(TEXT, [SECRET])
    assert expected == "<***>"
    for chunks in compositions(TEXT):
        masker = StreamMasker([SECRET, "other-secret-that-is-longer"])
        streamed = [masker.feed(chunk) for chunk in chunks] + [masker.flush()]
        assert "".join(streamed) == expected, chunks
        assert all(SECRET not in piece for piece in streamed)


def test_the_masker_holds_back_only_what_could_still_become_a_secret():
    masker = StreamMasker([SECRET])
    # The longest masked form is the secret's base64 (16 characters): 15 are held back.
    assert masker.feed("plain text, then sk-") == "plain"
    assert masker.feed("live-") == " text"
    assert masker.feed("4f9a and more text") == ", then ***"
    assert masker.flush() == " and more text"


def test_without_secrets_chunks_pass_through_at_once():
    masker = StreamMasker([])
    assert masker.feed("sk-") == "sk-" and masker.flush() == ""


def _reasoning(*chunks: str) -> list[dict[str, Any]]:
    return [{"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": c}}}}
            for c in chunks] + [{"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": f"done {SECRET}"}}},
                                {"messageStop": {"stopReason": "end_turn"}}]


SPLITS = [
    ["The key is sk-", "live-", "4f9a, as given."],
    ["The key is ", *SECRET, " as given."],  # one token per character
    *[["The key is " + SECRET[:i], SECRET[i:] + " as given."] for i in range(1, len(SECRET))],
]


@pytest.mark.parametrize("chunks", SPLITS, ids=lambda c: "|".join(c))
def test_a_secret_streamed_by_bedrock_token_by_token_never_reaches_thinking_items(bench: Bench, chunks: list[str]):
    # Given a run whose llm step streams its envs secret over several reasoning chunks
    bedrock = Bench(bench.settings.model_copy(update={"llm_provider": "bedrock"}), bench.store)
    run_id = bedrock.new_run([{"id": "ask", "type": "llm", "config": {"prompt": "hi"}}], envs={"KEY": SECRET})
    registry = FakeRegistry(llm=LlmStep(bedrock_client=FakeBedrock(_reasoning(*chunks))))

    # When the step runs
    assert bedrock.invoke(run_id, registry=registry)["next"] == "done"

    # Then the thinking items, in order, join to the masked text, and nothing stored holds the secret
    items = bench.store.client.query(TableName=bench.settings.runs_table, KeyConditionExpression="PK = :pk",
                                     ExpressionAttributeValues={":pk": {"S": keys.run_pk(run_id)}})["Items"]
    thinking = [i["content"]["S"] for i in sorted(items, key=lambda i: i["SK"]["S"])
                if i["SK"]["S"].startswith(keys.THINKING_SK_PREFIX)]
    assert "".join(thinking) == mask("".join(chunks), [SECRET]) and "***" in "".join(thinking)
    assert SECRET not in json.dumps(items)
    run = bedrock.run(run_id)
    assert run.status is Status.COMPLETED and run.activity_runs[0].outputs["text"] == "done ***"
