"""Which of the serving dependencies each image installs, with the versions ``pyproject.toml`` gives.

``pyproject.toml`` lists the serving dependencies once, for ``make setup`` (both services on one
machine). Each image needs only its own service's part of them, so that the gateway image carries no
ONNX runtime or NumPy and the scorer image no web stack; this file names the parts and takes every
version specifier from ``pyproject.toml``, so a version is never written twice. Run in the images'
build stages (the standard library only, Python 3.11+)::

    python3 docker/requirements.py scorer            # one requirement per line, for pip
    python3 docker/requirements.py scorer graphs     # several parts: their union
    python3 docker/requirements.py --no-deps scorer  # those to install with --no-deps (NO_DEPS)

Without ``--no-deps`` the list leaves out the ``NO_DEPS`` names, which are installed on their own with
``pip install --no-deps``.

``tests/deploy/test_dockerfiles.py`` checks that the parts cover every serving dependency and that
each service's imports are satisfied by its part; ``make image-smoke`` runs the images.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Distribution names (as in pyproject.toml) per part.
PARTS: dict[str, tuple[str, ...]] = {
    # `ferryman scorer`: gRPC, ONNX inference, tokenizer, metrics
    "scorer": (
        "grpcio",
        "grpcio-health-checking",
        "grpcio-reflection",
        "protobuf",
        "onnxruntime",
        "tokenizers",
        "numpy",
        "threadpoolctl",
        "prometheus-client",
    ),
    # `ferryman build`: writes the ONNX graphs (scorer image's build stage only, never at run time)
    "graphs": ("onnx", "safetensors"),
    # `ferryman gateway`: gRPC, HTTP server and client, breakers (Redis), config, metrics
    "gateway": (
        "grpcio",
        "grpcio-health-checking",
        "grpcio-reflection",
        "protobuf",
        "httpx",
        "prometheus-client",
        "pyyaml",
        "redis",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
    ),
}

# Installed without their dependencies in the run-time images: name -> why nothing they require is used.
NO_DEPS: dict[str, str] = {
    "tokenizers": "its one dependency, huggingface-hub (and with it hf-xet, fsspec, filelock, tqdm, pyyaml, "
    "an HTTP client: about 30 MB), serves Tokenizer.from_pretrained; the scorer reads tokenizer.json from a file",
}

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dependencies(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Serving dependencies of ``pyproject.toml``: canonical name -> full requirement string."""
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    out: dict[str, str] = {}
    for dep in deps:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", dep)
        if match is None:
            raise ValueError(f"{pyproject}: cannot read requirement {dep!r}")
        out[canonical(match.group(1))] = dep
    return out


def requirements(parts: list[str], pyproject: Path = PYPROJECT, *, no_deps: bool | None = None) -> list[str]:
    """The requirement strings of the union of ``parts``, in pyproject order.

    ``no_deps``: True, only the ``NO_DEPS`` names; False, all but them; None, all.
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    deps = dependencies(pyproject)
    wanted = {canonical(n) for p in parts for n in PARTS[p]}
    missing = sorted(wanted - deps.keys())
    if missing:
        raise ValueError(f"not serving dependencies in {pyproject}: {', '.join(missing)}")
    if no_deps is not None:
        wanted = {n for n in wanted if (n in NO_DEPS) == no_deps}
    return [req for name, req in deps.items() if name in wanted]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    no_deps = argv[0] == "--no-deps"
    parts = argv[1:] if no_deps else argv
    try:
        print("\n".join(requirements(parts, no_deps=no_deps)))
    except ValueError as exc:
        print(f"docker/requirements.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
