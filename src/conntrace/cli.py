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
@click.option("--ip-route", "ip_route_file", type=click.Path(dir_okay=False),
              help="A file with the output of `ip route` or `ip -j route` (added to the host's routes).")
@click.option("--sysctl", multiple=True, help="KEY=VALUE, e.g. net.ipv4.ip_forward=0.")
@click.option("--allow-unsupported", is_flag=True,
              help="Proceed when the ruleset uses things the model does not implement; "
                   "rules with them are marked and the result flagged uncertain.")
@click.option("--all-rules", is_flag=True, help="Also show the rules that did not match.")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@_friendly
def trace(packet, rules_file, host_file, local, iface, route, ip_route_file, sysctl,
          allow_unsupported, all_rules, as_json):
    """Trace one PACKET through one host, e.g.

    conntrace trace --rules node.rules "tcp 10.1.2.3:40000 > 10.96.0.10:80 syn in eth0"
    """
    from .api import default_router, install_rules, trace_packet
    from .host.build import build_host, read_text_file
    from .observe.render_text import render_trace
    from .scenario.load import load_host_file

    file_routes = []
    if ip_route_file:
        from .host.iproute import parse_ip_route_text

        # the local table is derived from the addresses: only main-table routes are taken
        file_routes = [r for r in parse_ip_route_text(
            read_text_file(ip_route_file, "ip route output"), ip_route_file)
            if r.table in ("main", "254")]
    if host_file:
        spec = load_host_file(host_file)
        host = build_host(spec)
        for k, v in _parse_sysctl_opts(sysctl).items():
            host.sysctls.set(k, v)
        if host.ruleset is not None and host.ruleset.unsupported and not allow_unsupported:
            from .errors import UnsupportedError

            raise UnsupportedError(list(host.ruleset.unsupported))
    else:
        host = default_router(local, iface, route, _parse_sysctl_opts(sysctl), file_routes)
    if host_file:
        for r in file_routes:
            host.devices.add_route(r)
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


def _print_summary(world, outcome, ct_format: str) -> None:
    from .observe.conntrack_tools import format_stats
    from .world.outcome import conntrack_lines

    click.echo("")
    click.echo("steps:")
    for s in outcome.steps:
        saw = "; ".join(f"{x.host} saw {x.peer_addr}:{x.peer_port}" for x in s.server_saw[:5])
        if len(s.server_saw) > 5:
            saw += f"; ... ({len(s.server_saw)} in all)"
        extra = f"  ({s.detail})" if s.detail else ""
        local = f" from {s.local_addr}:{s.local_port}" if s.local_port else ""
        click.echo(f"  #{s.index} {s.kind} on {s.host}{local}: {s.result}"
                   + (f" [{saw}]" if saw else "") + extra)
    for name, host in world.hosts.items():
        if host.conntrack is None:
            continue
        table = host.conntrack.table
        click.echo("")
        click.echo(f"conntrack -L on {name} at {world.now:.3f}s:")
        for line in conntrack_lines(world, name, ct_format) or ["(empty)"]:
            click.echo(f"  {line}")
        click.echo(f"conntrack -S on {name}:")
        for line in format_stats([s.values for s in table.stats]).splitlines():
            click.echo(f"  {line}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--until", type=float, help="Stop at this virtual time (seconds).")
@click.option("--json", "as_json", is_flag=True, help="Full structured result as JSON.")
@click.option("--pcap-dir", type=click.Path(file_okay=False),
              help="Write one capture per interface, as tcpdump -i IF would show it.")
@click.option("--conntrack-format", "ct_format", default="default",
              type=click.Choice(["default", "extended", "save", "proc"]),
              help="Format of the final conntrack tables (conntrack -L / -o ... / /proc).")
@click.option("--no-events", is_flag=True, help="Do not print conntrack -E lines.")
@click.option("--timestamps", is_flag=True, help="conntrack -E -o timestamp style event lines.")
@click.option("--allow-unsupported", is_flag=True)
@_friendly
def run(scenario, until, as_json, pcap_dir, ct_format, no_events, timestamps, allow_unsupported):
    """Run a SCENARIO file on the model and show every packet's story. Output streams as the
    run goes (memory stays bounded); --json keeps everything and prints one document."""
    from .api import run_scenario
    from .observe.stream import CaptureDir, RunPrinter
    from .world.outcome import conntrack_lines, event_lines

    observers = []
    captures = CaptureDir(pcap_dir) if pcap_dir else None
    if captures is not None:
        observers.append(captures)
    if not as_json:
        observers.append(RunPrinter(click.echo, events=not no_events, timestamps=timestamps))
    try:
        world, outcome = run_scenario(scenario, until, allow_unsupported, record=as_json,
                                      observers=observers)
    finally:
        if captures is not None:
            captures.close()
    pcaps = captures.paths if captures is not None else []
    if as_json:
        doc = {
            "scenario": world.scenario.name,
            "time": world.now,
            "outcome": outcome.to_json(),
            "packets": [t.to_json() for t in world.traces],
            "hosts": {name: {"conntrack": conntrack_lines(world, name),
                             "events": event_lines(world, name, timestamps=timestamps),
                             "stats": (h.conntrack.table.stats_total() if h.conntrack else {}),
                             }
                      for name, h in world.hosts.items()},
            "pcaps": pcaps,
        }
        click.echo(json.dumps(doc, indent=2))
        return
    _print_summary(world, outcome, ct_format)
    for p in pcaps:
        click.echo(f"wrote {p}")


@main.command()
@click.argument("scenario", type=click.Path(dir_okay=False, exists=True))
@click.option("--trace", "with_trace", is_flag=True,
              help="Also capture the kernel's own rule trace (xtables-monitor --trace).")
@click.option("--show-agree", is_flag=True, help="List the items that agree too.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the kernel run's files here.")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def verify(scenario, with_trace, show_agree, workdir, as_json):
    """Run SCENARIO on the model and on the real kernel (needs root) and diff them.
    Exit code 0 only when everything agrees (known deviations are reported, not agreed)."""
    from .api import run_scenario
    from .kernel.verify import verify as run_verify
    from .scenario.compare import render_comparison

    def model_runner(sc, until=None):
        return run_scenario(sc, until)[1]

    comparison, model_out, kernel_out = run_verify(scenario, model_runner, workdir=workdir,
                                                   trace=with_trace)
    if as_json:
        from .observe.trace import _jsonable

        click.echo(json.dumps({"comparison": _jsonable(comparison), "model": model_out.to_json(),
                               "kernel": kernel_out.to_json()}, indent=2))
    else:
        click.echo(render_comparison(comparison, show_agree=show_agree))
    sys.exit(0 if comparison.ok else 1)


@main.command()
@_friendly
def demo():
    """Run the built-in demo: DNAT + MASQUERADE through a gateway, explained."""
    from .api import run_scenario
    from .observe.demo import demo_lines, demo_scenario_path

    world, _outcome = run_scenario(demo_scenario_path())
    for line in demo_lines(world):
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
