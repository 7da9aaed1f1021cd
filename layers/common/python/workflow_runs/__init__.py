"""Workflow Runs: the domain shared by every function (models, store, auth, settings, ports).

Importing this package has no side effects and pulls in no web framework: the step runner
and the projector share it and must start fast.
"""
