"""A small Dockerfile reader for static checks (`make image-smoke` builds and runs the images).

Handles comments, backslash continuations, ``ARG`` defaults in ``FROM`` and exec-form (JSON)
``ENTRYPOINT``/``CMD``; enough for this repository's Dockerfiles, not a full parser.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    """One ``FROM ... [AS name]`` stage and its instructions, in order."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last_exec_form(self, keyword: str) -> list[str]:
        (*_, raw) = self.all(keyword)
        value = json.loads(raw)
        assert isinstance(value, list), f"{keyword} must use the exec (JSON) form"
        return [str(v) for v in value]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        lines.append((current + stripped).strip())
        current = ""
    if current:
        lines.append(current.strip())
    return lines


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with ``${ARG}`` in FROM lines replaced by global ARG defaults."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), rest.split()[0])
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif not stages and keyword == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default.strip('"')
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return stages
