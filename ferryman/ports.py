"""TCP port numbers, checked where they enter: command-line flags (an ``argparse`` type) and config files.

gRPC would silently bind a number past 65535 modulo 65536 (150050 as 18978), so every port a user gives is
checked against ``MAX_PORT`` here, by the scorer's and gateway's flags, ``ferryman up`` and the gateway's
config loader alike; and so are the ports of a gRPC target the gateway dials (``grpc_target``).
"""

from __future__ import annotations

import argparse

MAX_PORT = 65535


def port(text: str) -> int:
    """An ``argparse`` type: a TCP port number, 0 to ``MAX_PORT``."""
    value = int(text)  # a ValueError: argparse's "invalid port value: 'x'"
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to {MAX_PORT})")
    return value


def grpc_target(text: str) -> str:
    """An ``argparse`` type and config check: a gRPC target to dial (``host:port``, ``dns:///host:port``,
    ``ipv4:a:p,b:p``, ``unix:path``, ...). Refused: an http(s) URL, and a port that is not a number in 1-65535
    (gRPC would take either and then fail every call, seen only as the scorer never answering)."""
    if text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"{text!r} is a URL; a gRPC target is host:port or dns:///host:port")
    scheme, _, rest = text.partition(":")
    if scheme not in ("dns", "ipv4", "ipv6"):
        if rest.startswith("/") or scheme in ("unix", "unix-abstract", "vsock"):
            return text  # another resolver's URI (unix:, xds:///, ...): not ours to check
        scheme, rest = "", text  # host:port
    if scheme == "dns" and rest.startswith("//"):
        rest = rest[2:].partition("/")[2]  # dns://[authority]/host:port
    for address in rest.split(",") if scheme in ("ipv4", "ipv6") else [rest]:
        host, sep, number = address.rpartition(":")
        if not sep or (host.startswith("[") != host.endswith("]")) or (not host.startswith("[") and ":" in host):
            continue  # no port (gRPC's default), or an IPv6 address without one
        if not number.isdigit() or not 1 <= int(number) <= MAX_PORT:
            raise argparse.ArgumentTypeError(f"{text!r}: port {number!r} is not a port number (1 to {MAX_PORT})")
    return text
