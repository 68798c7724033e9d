"""The redaction hook: every text is passed through it before it is stored.

Regex rules (``learning.redact.rules``) run first, in order; then the operator's callable
(``learning.redact.callable: package.module:function``, ``str -> str``), imported once at
start. Texts are also cut to ``store.max_text_chars``. A callable that raises makes the record
unstorable (it is dropped and counted), never stored unredacted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from gateway.errors import ConfigError
from gateway.learning.config import RedactConfig


class RedactionError(Exception):
    """The operator's redaction callable failed on a text (the record is not stored)."""


def load_callable(target: str) -> Callable[[str], str]:
    """Import ``package.module:function`` (raises ConfigError with the reason)."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"learning.redact.callable: cannot import {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"learning.redact.callable: {target!r} is not a callable")
    return fn  # type: ignore[no-any-return]


class Redactor:
    """``redactor(text)``: the text as it may be stored."""

    def __init__(self, config: RedactConfig, max_chars: int) -> None:
        self._rules = config.rules
        self._fn = load_callable(config.callable) if config.callable else None
        self._max = max_chars

    def __call__(self, text: str) -> str:
        for rule in self._rules:
            text = rule.pattern.sub(rule.replace, text)
        if self._fn is not None:
            try:
                out = self._fn(text)
            except Exception as exc:
                raise RedactionError(f"redaction callable raised {type(exc).__name__}") from exc
            if not isinstance(out, str):
                raise RedactionError("redaction callable returned a non-string")
            text = out
        return text[: self._max]
