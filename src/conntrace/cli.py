"""Command-line interface: parse arguments, call the library, render. Nothing else."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group()
@click.version_option(__version__, prog_name="conntrace")
def main() -> None:
    """Model the Linux netfilter packet path: iptables, conntrack and NAT."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
