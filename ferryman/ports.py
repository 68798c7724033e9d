"""TCP port numbers, checked where they enter: command-line flags (an ``argparse`` type) and config files.

gRPC would silently bind a number past 65535 modulo 65536 (150050 as 18978), so every port a user gives is
checked against ``MAX_PORT`` here, by the scorer's and gateway's flags, ``ferryman up`` and the gateway's
config loader alike.
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
