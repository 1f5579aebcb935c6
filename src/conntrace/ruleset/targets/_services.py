"""Service names in NAT/TPROXY port arguments (xtables_service_to_port(name, NULL):
getservbyname for any protocol). The full /etc/services table lives with the matches
(ruleset/matches/_services.py); the few names below keep targets working without it."""

from __future__ import annotations

_FALLBACK = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
    "http": 80, "www": 80, "pop3": 110, "ntp": 123, "imap": 143, "imap2": 143, "snmp": 161,
    "ldap": 389, "https": 443, "submission": 587, "imaps": 993, "pop3s": 995,
}


def service_port(name: str, proto: int | None = None) -> int | None:
    try:
        from ..matches import _services as services  # type: ignore[attr-defined]

        tables = [getattr(services, "SERVICES_TCP", {}), getattr(services, "SERVICES_UDP", {})]
    except ImportError:
        tables = [_FALLBACK]
    if proto == 17:
        tables.reverse()
    for table in tables:
        if name in table:
            return table[name]
    return None
