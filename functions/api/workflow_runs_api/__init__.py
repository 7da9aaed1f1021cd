"""workflow_runs_api."""
