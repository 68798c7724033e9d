"""Ferryman: an LLM router. This package holds the ``ferryman`` command and the generated stubs.

The services live in the top-level ``scorer`` and ``gateway`` packages; the
stubs generated from ``proto/`` live under ``ferryman.scorer.v1`` and
``ferryman.gateway.v1`` (the protobuf package path) and are shared by both.
"""

__version__ = "0.1.0"
