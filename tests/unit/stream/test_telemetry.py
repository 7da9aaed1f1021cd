"""The stream's telemetry: EMF lines in the agreed names, and nothing on stdout off Lambda."""

from __future__ import annotations

import json

from workflow_runs_stream.telemetry import StreamTelemetry

KEYS = {"request_id": "req-1", "tenant": "acme", "run_id": "r-1"}


def test_open_and_refused_streams_are_one_emf_line_each_in_the_agreed_names():
    lines: list[str] = []
    telemetry = StreamTelemetry(lines.append, lambda_runtime=False)

    telemetry.stream_opened(KEYS, 7)
    telemetry.stream_refused(KEYS, 100)

    opened, refused = (json.loads(line) for line in lines)
    for emf, name, value in ((opened, "OpenStreams", [7.0]), (refused, "StreamsRefused", [1.0])):
        [directive] = emf["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "WorkflowRuns"
        assert directive["Metrics"] == [{"Name": name, "Unit": "Count"}]
        assert directive["Dimensions"] == [["service"]] and emf["service"] == "stream"
        assert emf[name] == value
        # one metric per line: nothing of the previous stream is flushed again
        assert {"OpenStreams", "StreamsRefused"} - {name} & set(emf) == set()


def test_off_lambda_nothing_reaches_stdout_and_logs_carry_the_correlation_keys(capfd, caplog):
    telemetry = StreamTelemetry(lambda_runtime=False)

    with caplog.at_level("INFO", logger="stream"):
        telemetry.stream_opened(KEYS, 1)
        telemetry.stream_closed(KEYS, 0.5, "ended")

    assert capfd.readouterr().out == ""
    opened, closed = caplog.records
    assert opened.getMessage() == "stream opened" and closed.getMessage() == "stream closed"
    for record in (opened, closed):
        assert (record.request_id, record.tenant, record.run_id) == ("req-1", "acme", "r-1")


def test_in_lambda_the_metric_lines_go_to_stdout(capfd):
    telemetry = StreamTelemetry(lambda_runtime=True)

    telemetry.stream_refused(KEYS, 3)

    out = capfd.readouterr().out.splitlines()
    emf = [json.loads(line) for line in out if '"_aws"' in line]
    assert [e["StreamsRefused"] for e in emf] == [[1.0]]
