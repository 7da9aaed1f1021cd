"""One construct per concern; infra/stack.py composes them like the diagram in DESIGN.md."""
