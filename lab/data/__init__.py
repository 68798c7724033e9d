"""Data loaders for training and evaluation (no torch here).

- :mod:`lab.data.battles`: pairwise battles (Chatbot Arena 55k schema; judge grades -> battles)
- :mod:`lab.data.benchmarks`: RouteLLM benchmark correctness/grades as golden labels
- :mod:`lab.data.keys`: prompt keys (whitespace-normalised SHA-1)
- :mod:`lab.data.folds`: cross-fitting fold assignments
- :mod:`lab.data.embed_cache`: prompt embeddings cached on disk by text hash
- :mod:`lab.data.report`: bad-row accounting (:class:`LoadReport`, :class:`DataError`)
"""

from __future__ import annotations

from lab.data.report import DataError, LoadReport

__all__ = ["DataError", "LoadReport"]
