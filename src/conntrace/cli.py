"""Command-line interface: parse arguments, call the library, render. Nothing else.

Every error the user can cause becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from . import __version__
from .errors import ConntraceError


def _friendly(fn):
    """Turn library errors into `conntrace: <file:line: message>` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConntraceError as e:
            click.echo(f"conntrace: {e}", err=True)
            sys.exit(2)

    return wrapper


@click.group()
@click.version_option(__version__, prog_name="conntrace")
def main() -> None:
    """Model the Linux netfilter packet path: iptables, conntrack and NAT."""


def _parse_sysctl_opts(values: tuple[str, ...]) -> dict:
    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got '{v}'", param_hint="--sysctl")
        out[k.strip()] = val.strip()
    return out


@main.command()
@click.argument("packet")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False),
              help="iptables-save / iptables-restore / iptables -S file.")
@click.option("--host", "host_file", type=click.Path(dir_okay=False),
              help="Host description (YAML: interfaces, routes, sysctls, listen...).")
@click.option("--local", multiple=True, help="A local address (on eth0, or IFACE=ADDR).")
@click.option("--iface", multiple=True, help="An interface: NAME=ADDR/LEN[,ADDR/LEN].")
@click.option("--route", multiple=True, help="A route in `ip route` syntax.")
@click.option("--sysctl", multiple=True, help="KEY=VALUE, e.g. net.ipv4.ip_forward=0.")
@click.option("--allow-unsupported", is_flag=True,
              help="Proceed when the ruleset uses things the model does not implement; "
                   "rules with them are marked and the result flagged uncertain.")
@click.option("--all-rules", is_flag=True, help="Also show the rules that did not match.")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@_friendly
def trace(packet, rules_file, host_file, local, iface, route, sysctl, allow_unsupported,
          all_rules, as_json):
    """Trace one PACKET through one host, e.g.

    conntrace trace --rules node.rules "tcp 10.1.2.3:40000 > 10.96.0.10:80 syn in eth0"
    """
    from .api import default_router, install_rules, trace_packet
    from .host.build import build_host, read_text_file
    from .observe.render_text import render_trace
    from .scenario.load import load_host_file

    if host_file:
        spec = load_host_file(host_file)
        host = build_host(spec)
        for k, v in _parse_sysctl_opts(sysctl).items():
            host.sysctls.set(k, v)
        if host.ruleset is not None and host.ruleset.unsupported and not allow_unsupported:
            from .errors import UnsupportedError

            raise UnsupportedError(list(host.ruleset.unsupported))
    else:
        host = default_router(local, iface, route, _parse_sysctl_opts(sysctl))
    if rules_file:
        install_rules(host, read_text_file(rules_file, "an iptables ruleset"), rules_file,
                      allow_unsupported)
    result = trace_packet(host, packet, verbose=True)
    if as_json:
        click.echo(json.dumps({
            "assumptions": result.assumptions,
            "uncertain": result.uncertain,
            "packets": [w.trace.to_json() for w in result.walks],
        }, indent=2))
        return
    if result.assumptions:
        click.echo("Assumptions:")
        for a in result.assumptions:
            click.echo(f"  - {a}")
        click.echo("")
    for i, w in enumerate(result.walks):
        if i:
            click.echo("")
            click.echo(f"caused by packet #{result.main.trace.packet_id}:")
        for line in render_trace(w.trace, all_rules=all_rules):
            click.echo(line)


@main.command()
@click.argument("rules_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@_friendly
def lint(rules_file, as_json):
    """Load a ruleset and report tables, chains, unused chains, unreachable rules and
    everything the model does not support."""
    from .host.build import read_text_file
    from .ruleset.iptables_save import parse_rules
    from .ruleset.lint import lint as run_lint
    from .ruleset.lint import render_lint

    pair = parse_rules(read_text_file(rules_file, "an iptables ruleset"), rules_file)
    report = run_lint(pair)
    if as_json:
        from .observe.trace import _jsonable

        click.echo(json.dumps(_jsonable(report), indent=2))
    else:
        click.echo(render_lint(report))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
