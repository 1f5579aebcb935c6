"""world layer."""
