"""nat layer."""
