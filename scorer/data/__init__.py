"""Data loaders for training and evaluation (no torch here).

- :mod:`scorer.data.battles`: pairwise battles (Chatbot Arena 55k schema; judge grades -> battles)
- :mod:`scorer.data.benchmarks`: RouteLLM benchmark correctness/grades as golden labels
- :mod:`scorer.data.folds`: prompt keys and cross-fitting fold assignments
- :mod:`scorer.data.report`: bad-row accounting (:class:`LoadReport`, :class:`DataError`)
"""

from __future__ import annotations

from scorer.data.report import DataError, LoadReport

__all__ = ["DataError", "LoadReport"]
