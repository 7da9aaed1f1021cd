"""The one-machine runtime: `workflow-runs dev` wires every handler together without AWS."""
