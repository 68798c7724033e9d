"""Checked reading of decoded JSON, for request bodies and provider answers alike.

``Bad(where, what)`` builds the exception for a value of the wrong shape: a client's
:class:`~gateway.errors.InvalidRequestError` (:func:`client_error`) or a provider's
malformed answer (``gateway.providers.base.malformed``), so one reader serves both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import InvalidRequestError

Bad = Callable[[str, str], Exception]


def client_error(where: str, what: str) -> Exception:
    """A client's request of the wrong shape: 400 naming the field."""
    return InvalidRequestError(f"{where} {what}", param=where)


def obj(value: Any, where: str, bad: Bad) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(where, "must be an object")
    return value


def member(data: dict[str, Any], key: str, where: str, bad: Bad) -> dict[str, Any]:
    """``data[key]`` as an object; absent or null is ``{}``, anything else is ``bad``."""
    value = data.get(key)
    return {} if value is None else obj(value, join(where, key), bad)


def array(value: Any, where: str, bad: Bad) -> list[Any]:
    if not isinstance(value, list):
        raise bad(where, "must be an array")
    return value


def text(data: dict[str, Any], key: str, where: str, bad: Bad, *, required: bool = False) -> str:
    """``data[key]`` as a string ("" when absent or null, unless required)."""
    value = data.get(key)
    if value is None:
        if required:
            raise bad(join(where, key), "is required")
        return ""
    if not isinstance(value, str):
        raise bad(join(where, key), "must be a string")
    return value


def flag(data: dict[str, Any], key: str, where: str, bad: Bad) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad(join(where, key), "must be a boolean")
    return value


def integer(data: dict[str, Any], key: str, where: str, bad: Bad) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad(join(where, key), "must be an integer")
    return value


def number(data: dict[str, Any], key: str, where: str, bad: Bad) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(join(where, key), "must be a number")
    return float(value)


def json_object(data: dict[str, Any], key: str, where: str, bad: Bad) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    return obj(value, join(where, key), bad)


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
