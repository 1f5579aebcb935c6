"""Ruleset data model, parsers (iptables-save, iptables -S), writers and extensions."""
