"""`llm`: one model call; its reasoning text streams out through `ctx.emit_thinking`.

Providers (`settings.llm_provider`):
- `bedrock` — Amazon Bedrock ConverseStream (boto3 `bedrock-runtime`), model
  `settings.bedrock_model_id`. Reasoning deltas go to `emit_thinking` as they arrive; text
  deltas are joined into `text`. Throttling, 5xx and connection problems are retryable.
- `echo` — DEVELOPMENT ONLY: a built-in deterministic model for one machine. It answers with
  the rendered prompt and streams a short, fixed-shape reasoning text in a few chunks.

`config.timeoutSeconds` (default 60) bounds the whole model call — the request, the reasoning
and the answer streamed — not each read: a model that trickles a token a minute cannot
stretch a step past it. Past the deadline the stream is closed and the attempt fails,
retryable (the run-class choice, workflow_runs/run_class.py, relies on this bound).
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Any

from workflow_runs.models import llm_timeout_seconds

from workflow_runs_step_runner.steps.base import StepContext, StepError, StepOutcome
from workflow_runs_step_runner.steps.templating import render

DEFAULT_MAX_TOKENS = 1024

# Bedrock error codes worth another attempt; everything else (validation, access, unknown
# model) fails the step at once.
RETRYABLE_CODES = frozenset({
    "ThrottlingException", "TooManyRequestsException", "ServiceUnavailableException",
    "InternalServerException", "ModelStreamErrorException", "ModelNotReadyException",
    "ModelTimeoutException", "RequestTimeout", "RequestTimeoutException",
})

# Of those, the ones that say the service was busy (throttled, or down for a moment): the
# state machine tries the invocation again, however few attempts the step allows.
BUSY_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ServiceUnavailableException",
                        "InternalServerException"})


@lru_cache(maxsize=8)
def _default_bedrock_client(read_timeout: float) -> Any:
    from botocore.config import Config
    from workflow_runs import aws_clients

    # botocore's own retries stay small: the state machine owns retrying with backoff. No
    # single read waits longer than the step's whole budget.
    return aws_clients.make("bedrock-runtime", config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                                         read_timeout=read_timeout, connect_timeout=5))


class LlmStep:
    name = "llm"

    def __init__(self, *, bedrock_client: Any = None):
        self._bedrock_client = bedrock_client

    def run(self, ctx: StepContext) -> StepOutcome:
        config = render(ctx.step.config, ctx)
        prompt = config.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise StepError("config.prompt must render to a non-empty string")
        system = config.get("system")
        if system is not None and not isinstance(system, str):
            raise StepError("config.system must render to a string")
        max_tokens = _positive_int(config.get("maxTokens", DEFAULT_MAX_TOKENS), "config.maxTokens")
        timeout = llm_timeout_seconds(ctx.step)
        provider = ctx.settings.llm_provider
        if provider == "echo":
            return _echo(ctx, prompt)
        if provider == "bedrock":
            client = self._bedrock_client or _default_bedrock_client(timeout)
            budget = config.get("reasoningBudgetTokens")
            return _bedrock(ctx, client, prompt, system, max_tokens,
                            None if budget is None else _positive_int(budget, "config.reasoningBudgetTokens"),
                            Deadline(timeout))
        raise StepError(f"unknown LLM_PROVIDER {provider!r} (expected 'bedrock' or 'echo')")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StepError(f"{name} must be a positive integer")
    return value


def _echo(ctx: StepContext, prompt: str) -> StepOutcome:
    """Deterministic: the same prompt always gives the same thinking chunks and text."""
    words = len(prompt.split())
    for chunk in (
        "Reading the prompt",
        f" ({words} word{'s' if words != 1 else ''}, {len(prompt)} characters).",
        " The echo model answers with the prompt itself.",
    ):
        ctx.emit_thinking(chunk)
    return StepOutcome(outputs={"text": prompt, "model": "echo"})


class Deadline:
    """The model call's one budget. `watch(stream)` closes the response stream when it runs
    out (a read blocked on a silent model returns then); `expired` says whether it did."""

    def __init__(self, seconds: float, clock: Any = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._ends = clock() + seconds
        self._expired = threading.Event()
        self._timer: threading.Timer | None = None

    @property
    def expired(self) -> bool:
        return self._expired.is_set() or self._clock() >= self._ends

    def watch(self, stream: Any) -> None:
        def close() -> None:
            self._expired.set()
            closer = getattr(stream, "close", None)
            if closer is not None:
                closer()

        self._timer = threading.Timer(max(0.0, self._ends - self._clock()), close)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def error(self, model_id: str) -> StepError:
        return StepError(f"llm: bedrock {model_id} did not finish within timeoutSeconds ({self.seconds:g}s)",
                         retryable=True)


def _bedrock(ctx: StepContext, client: Any, prompt: str, system: str | None, max_tokens: int,
             reasoning_budget: int | None, deadline: Deadline) -> StepOutcome:
    model_id = ctx.settings.bedrock_model_id
    request: dict[str, Any] = {
        "modelId": model_id,
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"maxTokens": max_tokens},
    }
    if system:
        request["system"] = [{"text": system}]
    if reasoning_budget:
        # Anthropic models on Bedrock stream reasoning only when extended thinking is on.
        request["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": reasoning_budget}}
    text: list[str] = []
    stop_reason: str | None = None
    usage: dict[str, int] = {}
    try:
        response = client.converse_stream(**request)
        if deadline.expired:
            raise deadline.error(model_id)
        deadline.watch(response["stream"])
        for event in response["stream"]:
            if deadline.expired:
                raise deadline.error(model_id)
            if "contentBlockDelta" in event:
                delta = event["contentBlockDelta"].get("delta", {})
                if "text" in delta:
                    text.append(delta["text"])
                reasoning = delta.get("reasoningContent", {}).get("text")
                if reasoning:
                    ctx.emit_thinking(reasoning)
            elif "messageStop" in event:
                stop_reason = event["messageStop"].get("stopReason")
            elif "metadata" in event:
                raw = event["metadata"].get("usage", {})
                usage = {k: raw[k] for k in ("inputTokens", "outputTokens", "totalTokens") if k in raw}
            else:
                _raise_stream_exception(event)
        if deadline.expired and stop_reason is None:  # the stream was closed under it
            raise deadline.error(model_id)
    except StepError:
        raise
    except Exception as exc:  # noqa: BLE001 - classified below; botocore is imported lazily
        if deadline.expired:
            raise deadline.error(model_id) from None
        raise _classify(exc, model_id) from None
    finally:
        deadline.stop()
    return StepOutcome(outputs={"text": "".join(text), "model": model_id, "stopReason": stop_reason, "usage": usage})


def _raise_stream_exception(event: dict[str, Any]) -> None:
    """An exception delivered as an event of the stream (botocore usually raises instead)."""
    for key, value in event.items():
        if key.endswith("Exception"):
            code = key[0].upper() + key[1:]
            message = value.get("message", "") if isinstance(value, dict) else str(value)
            raise StepError(f"llm: bedrock stream error {code}: {message}", retryable=code in RETRYABLE_CODES)


def _classify(exc: Exception, model_id: str) -> StepError:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        retryable = code in RETRYABLE_CODES or status >= 500 or status == 429
        return StepError(f"llm: bedrock {model_id} failed: {code}: {error.get('Message', '')}", retryable=retryable,
                         busy=code in BUSY_CODES or status >= 500 or status == 429)
    if isinstance(exc, BotoCoreError):  # connection closed, read timeout, endpoint unreachable
        return StepError(f"llm: bedrock {model_id} failed: {type(exc).__name__}", retryable=True)
    return StepError(f"llm: bedrock {model_id} failed: {type(exc).__name__}: {exc}", retryable=False)
