"""Hooks, table priorities, chain traversal, verdicts and trace events."""
