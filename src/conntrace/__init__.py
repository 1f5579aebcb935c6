"""conntrace: a deterministic, offline model of the Linux netfilter packet path."""

__version__ = "0.1.0"
