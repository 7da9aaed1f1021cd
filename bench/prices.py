"""Every price the cost models use, in one place: AWS list prices for us-east-1, as
published on the services' pricing pages, read 2026-12 (on-demand, first tier, no free tier).

Sampling and CPU scaling are AWS's documented defaults, not measurements: listed here so the
models type no number of their own.
"""

from __future__ import annotations

REGION = "us-east-1"
AS_OF = "2026-12"

PRICES = {
    # Step Functions: Standard per state transition; Express per request and per GB-second
    # ($0.06 per GB-hour), its duration rounded up to 100 ms and its memory billed in 64 MB chunks.
    "sfn_standard_per_transition": 0.025 / 1000,
    "sfn_express_per_request": 1.00 / 1e6,
    "sfn_express_per_gb_second": 0.06 / 3600,
    # DynamoDB on-demand: write and read request units; storage per GB-month.
    "dynamodb_per_write_unit": 0.625 / 1e6,
    "dynamodb_per_read_unit": 0.125 / 1e6,
    "dynamodb_storage_per_gb_month": 0.25,
    # Lambda (arm64): requests, GB-seconds.
    "lambda_per_request": 0.20 / 1e6,
    "lambda_per_gb_second_arm64": 0.0000133334,
    # CloudWatch Logs: ingestion (standard class) per GB.
    "logs_ingestion_per_gb": 0.50,
    # X-Ray: traces recorded.
    "xray_per_trace_recorded": 5.00 / 1e6,
    # KMS: symmetric requests ($0.03 per 10,000).
    "kms_per_request": 0.03 / 10_000,
    # API Gateway REST API per request (first 333 million); Lambda function URLs cost nothing.
    "apigw_rest_per_request": 3.50 / 1e6,
}

# X-Ray's sampling where no rule of ours applies: Lambda's own (a function that starts a
# trace: the stream function behind its URL), not configurable: the first request each
# second, then 5 % of the rest. Below one request a second the first is every request.
# (The API stages' own rule is infra.sizing.XRAY_SAMPLED_PERCENT; the projector only continues
# a caller's trace, and stream records carry none.)
XRAY_DEFAULT_RESERVOIR_PER_SECOND = 1.0
XRAY_DEFAULT_FIXED_RATE = 0.05
# The traffic at which the per-run figures are priced (where a reservoir makes the sampled
# share depend on it): a million runs a month.
RUNS_PER_MONTH = 1_000_000
SECONDS_PER_MONTH = 30.4375 * 86400


def default_sampled_fraction(requests_per_second: float) -> float:
    """The share of requests X-Ray's default rule (and Lambda's) records at this rate."""
    if requests_per_second <= XRAY_DEFAULT_RESERVOIR_PER_SECOND:
        return 1.0
    extra = requests_per_second - XRAY_DEFAULT_RESERVOIR_PER_SECOND
    return (XRAY_DEFAULT_RESERVOIR_PER_SECOND + XRAY_DEFAULT_FIXED_RATE * extra) / requests_per_second
# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB.
LAMBDA_FULL_VCPU_MB = 1769
# What Express bills a definition this small with {runId} as its data (about 50 MB): one chunk.
EXPRESS_BILLED_MB = 64
EXPRESS_DURATION_GRANULARITY_SECONDS = 0.1
