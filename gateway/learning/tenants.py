"""Tenants: who sent a request, for per-tenant opt-out and for checking who may rate an answer.

A tenant is one client API key. Its id is ``t-`` + the first 16 hex digits of the key's SHA-256:
stable, computable by the operator (``ferryman learn tenant-id``), and no secret (the key cannot
be recovered from it). With auth disabled every request is tenant ``anonymous``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys

ANONYMOUS = "anonymous"
_TENANT_ID = re.compile(r"t-[0-9a-f]{16}")


def tenant_id(client_key: str) -> str:
    return "t-" + hashlib.sha256(client_key.encode()).hexdigest()[:16]


def is_tenant_id(text: str) -> bool:
    """Whether ``text`` is a tenant id (:func:`tenant_id`'s form, or ``anonymous``), not e.g. a client key."""
    return text == ANONYMOUS or _TENANT_ID.fullmatch(text) is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the tenant id of each client API key (for learning.shadow.opt_out_tenants). Keys are read from"
        " standard input, one per line, so that they stay out of the shell history and the process list."
    )


def run(args: argparse.Namespace) -> int:
    for line in sys.stdin:
        key = line.strip()
        if key:
            print(tenant_id(key))
    return 0
