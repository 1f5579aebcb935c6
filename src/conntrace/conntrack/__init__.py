"""conntrack layer."""
