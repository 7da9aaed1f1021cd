"""workflow_runs_stream."""
