"""llm: the echo development model and Bedrock ConverseStream through a fake client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from workflow_runs_step_runner.steps.base import StepError
from workflow_runs_step_runner.steps.llm import LlmStep


class FakeBedrock:
    """Stands in for boto3's bedrock-runtime client: records requests, replays a stream."""

    def __init__(self, events: list[dict[str, Any]] | None = None, error: Exception | None = None,
                 error_after: int | None = None):
        self.events = events or []
        self.error = error
        self.error_after = error_after
        self.requests: list[dict[str, Any]] = []

    def converse_stream(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        if self.error is not None and self.error_after is None:
            raise self.error
        return {"stream": self._stream()}

    def _stream(self) -> Iterator[dict[str, Any]]:
        for i, event in enumerate(self.events):
            if self.error is not None and i == self.error_after:
                raise self.error
            yield event


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "nope"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "ConverseStream")


STREAM = [
    {"messageStart": {"role": "assistant"}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "The user asks "}}}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "about tides."}}}},
    {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}},
    {"contentBlockStop": {"contentBlockIndex": 0}},
    {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Tides are "}}},
    {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "caused by the Moon."}}},
    {"contentBlockStop": {"contentBlockIndex": 1}},
    {"messageStop": {"stopReason": "end_turn"}},
    {"metadata": {"usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 42}, "metrics": {"latencyMs": 5}}},
]


# --- echo ---------------------------------------------------------------------------------------


def test_echo_emits_thinking_chunks_then_returns_the_rendered_prompt(make_ctx):
    thinking: list[str] = []
    ctx = make_ctx("llm", {"prompt": "Summarise {{ inputs.topic }} in one line"}, inputs={"topic": "tides"},
                   thinking=thinking, llm_provider="echo")
    outcome = LlmStep().run(ctx)
    assert outcome.outputs == {"text": "Summarise tides in one line", "model": "echo"}
    assert len(thinking) >= 2
    assert "".join(thinking) == ("Reading the prompt (5 words, 27 characters)."
                                 " The echo model answers with the prompt itself.")


def test_echo_is_deterministic(make_ctx):
    runs = []
    for _ in range(2):
        thinking: list[str] = []
        outcome = LlmStep().run(make_ctx("llm", {"prompt": "same"}, thinking=thinking))
        runs.append((thinking, outcome.outputs))
    assert runs[0] == runs[1]


def test_echo_is_the_default_provider(make_ctx):
    assert LlmStep().run(make_ctx("llm", {"prompt": "hi"})).outputs["model"] == "echo"


def test_unknown_provider_fails_without_retry(make_ctx):
    with pytest.raises(StepError) as caught:
        LlmStep().run(make_ctx("llm", {"prompt": "hi"}, llm_provider="oracle"))
    assert caught.value.retryable is False and "oracle" in caught.value.message


def test_prompt_rendering_to_nothing_is_refused(make_ctx):
    with pytest.raises(StepError, match="config.prompt must render to a non-empty string"):
        LlmStep().run(make_ctx("llm", {"prompt": "{{ inputs.p }}"}, inputs={"p": ""}))


# --- bedrock ------------------------------------------------------------------------------------


def test_bedrock_streams_reasoning_as_thinking_and_joins_text(make_ctx):
    thinking: list[str] = []
    fake = FakeBedrock(STREAM)
    ctx = make_ctx("llm", {"prompt": "Why {{ inputs.topic }}?", "system": "Be brief", "maxTokens": 300},
                   inputs={"topic": "tides"}, thinking=thinking, llm_provider="bedrock", bedrock_model_id="m-1")
    outcome = LlmStep(bedrock_client=fake).run(ctx)
    assert thinking == ["The user asks ", "about tides."]
    assert outcome.outputs == {
        "text": "Tides are caused by the Moon.", "model": "m-1", "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 30, "totalTokens": 42},
    }
    assert fake.requests == [{
        "modelId": "m-1",
        "messages": [{"role": "user", "content": [{"text": "Why tides?"}]}],
        "inferenceConfig": {"maxTokens": 300},
        "system": [{"text": "Be brief"}],
    }]


def test_bedrock_thinking_arrives_before_the_stream_ends(make_ctx):
    # Each reasoning delta reaches emit_thinking while the stream is still being read.
    seen_at: list[int] = []
    consumed = 0
    fake = FakeBedrock(STREAM)
    original = fake._stream

    def counting_stream():
        nonlocal consumed
        for event in original():
            consumed += 1
            yield event

    fake._stream = counting_stream
    ctx = make_ctx("llm", {"prompt": "p"}, llm_provider="bedrock")
    ctx.emit_thinking = lambda text: seen_at.append(consumed)
    LlmStep(bedrock_client=fake).run(ctx)
    assert seen_at == [2, 3]


def test_bedrock_reasoning_budget_turns_on_extended_thinking(make_ctx):
    fake = FakeBedrock(STREAM)
    ctx = make_ctx("llm", {"prompt": "p", "maxTokens": 4000, "reasoningBudgetTokens": 1024}, llm_provider="bedrock")
    LlmStep(bedrock_client=fake).run(ctx)
    assert fake.requests[0]["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}


@pytest.mark.parametrize("code, status", [
    ("ThrottlingException", 429), ("ServiceUnavailableException", 503), ("InternalServerException", 500),
    ("ModelStreamErrorException", 424), ("SomethingNew", 502),
])
def test_bedrock_throttling_and_server_errors_are_retryable(make_ctx, code, status):
    ctx = make_ctx("llm", {"prompt": "p"}, llm_provider="bedrock")
    with pytest.raises(StepError) as caught:
        LlmStep(bedrock_client=FakeBedrock(error=client_error(code, status))).run(ctx)
    assert caught.value.retryable is True and code in caught.value.message


@pytest.mark.parametrize("code, status", [("ValidationException", 400), ("AccessDeniedException", 403),
                                          ("ResourceNotFoundException", 404)])
def test_bedrock_client_errors_are_not_retryable(make_ctx, code, status):
    ctx = make_ctx("llm", {"prompt": "p"}, llm_provider="bedrock")
    with pytest.raises(StepError) as caught:
        LlmStep(bedrock_client=FakeBedrock(error=client_error(code, status))).run(ctx)
    assert caught.value.retryable is False


def test_bedrock_error_in_the_middle_of_the_stream_is_retryable_after_partial_thinking(make_ctx):
    thinking: list[str] = []
    fake = FakeBedrock(STREAM, error=client_error("ThrottlingException", 429), error_after=3)
    ctx = make_ctx("llm", {"prompt": "p"}, llm_provider="bedrock", thinking=thinking)
    with pytest.raises(StepError) as caught:
        LlmStep(bedrock_client=fake).run(ctx)
    assert caught.value.retryable is True
    assert thinking == ["The user asks ", "about tides."]


def test_bedrock_exception_event_in_the_stream_is_classified(make_ctx):
    fake = FakeBedrock([{"throttlingException": {"message": "slow down"}}])
    with pytest.raises(StepError) as caught:
        LlmStep(bedrock_client=fake).run(make_ctx("llm", {"prompt": "p"}, llm_provider="bedrock"))
    assert caught.value.retryable is True and "ThrottlingException: slow down" in caught.value.message


def test_bedrock_read_timeout_is_retryable(make_ctx):
    fake = FakeBedrock(error=ReadTimeoutError(endpoint_url="https://bedrock-runtime"))
    with pytest.raises(StepError) as caught:
        LlmStep(bedrock_client=fake).run(make_ctx("llm", {"prompt": "p"}, llm_provider="bedrock"))
    assert caught.value.retryable is True


# --- the model call's budget (timeoutSeconds) ----------------------------------------------------


class SilentStream:
    """A stream that sends its first events, then nothing, until it is closed (as botocore's
    EventStream does when its connection is closed under a blocked read)."""

    def __init__(self, first: list[dict[str, Any]]):
        self.first = first
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        yield from self.first
        self.closed.wait(timeout=30)

    def close(self) -> None:
        self.closed.set()


def test_a_model_that_goes_silent_fails_the_attempt_at_its_timeout_retryable(make_ctx):
    # Given a model that streams some reasoning, then nothing
    stream = SilentStream(STREAM[:3])
    bedrock = FakeBedrock()
    bedrock.converse_stream = lambda **request: {"stream": stream}  # type: ignore[method-assign]
    thinking: list[str] = []
    ctx = make_ctx("llm", {"prompt": "hi", "timeoutSeconds": 0.5}, thinking=thinking, llm_provider="bedrock")

    # When the step runs with a half-second budget
    with pytest.raises(StepError) as failed:
        LlmStep(bedrock_client=bedrock).run(ctx)

    # Then the stream was closed at the deadline and the attempt fails, to be retried
    assert stream.closed.is_set()
    assert failed.value.retryable
    assert "timeoutSeconds (0.5s)" in failed.value.message
    assert thinking == ["The user asks ", "about tides."]


def test_a_model_that_answers_within_its_timeout_completes(make_ctx):
    bedrock = FakeBedrock(STREAM)
    ctx = make_ctx("llm", {"prompt": "hi", "timeoutSeconds": 30}, llm_provider="bedrock")
    assert LlmStep(bedrock_client=bedrock).run(ctx).outputs["stopReason"] == "end_turn"


@pytest.mark.parametrize("timeout", [0, -5, 271, "60", True, None])
def test_a_timeout_outside_its_range_is_refused_when_the_workflow_is_put(timeout: Any):
    from pydantic import ValidationError
    from workflow_runs.models import Step

    with pytest.raises(ValidationError, match="timeoutSeconds"):
        Step.model_validate({"id": "l", "type": "llm", "config": {"prompt": "hi", "timeoutSeconds": timeout}})
