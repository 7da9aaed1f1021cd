"""The CDK app that deploys the Workflow Runs API (see docs/deploy.md)."""
