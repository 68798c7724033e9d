"""Prompt identity: whitespace-normalised text and its stable key (used by every loader and fold)."""

from __future__ import annotations

import hashlib


def normalise(text: str) -> str:
    """Collapse runs of whitespace and trim, so formatting-only copies compare equal."""
    return " ".join(text.split())


def prompt_key(text: str) -> str:
    """Stable id of a prompt: SHA-1 (hex) of its whitespace-normalised text."""
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()
