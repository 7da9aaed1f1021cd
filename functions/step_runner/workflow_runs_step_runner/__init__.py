"""workflow_runs_step_runner."""
