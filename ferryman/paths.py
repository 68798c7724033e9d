"""Where Ferryman's files are: settings from the environment, defaults relative to the working directory.

Nothing is located from the source tree, so an installed package finds the same files as a
checkout. ``make`` runs from the checkout's root, where the defaults resolve:

- ``FERRYMAN_ROUTERS_DIR``: router artifacts (default ``routers``)
- ``FERRYMAN_ENCODER_DIR``: the ONNX encoder built by ``ferryman build encoder`` (default ``build/encoder``)
- ``FERRYMAN_CACHE_DIR``: embedding and score caches of the lab (default ``build/cache``)
- ``FERRYMAN_DATA``: the public data (default ``../shared/data``, i.e. a ``shared/data`` folder beside
  the working directory, as the development set-up lays it out next to a checkout)

The scorer's own variables (``FERRYMAN_SCORER_ROUTERS_DIR``, ...) and every ``--*-dir`` flag take
precedence where a command offers them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "encoder_dir", "routers_dir"]


def _setting(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


def routers_dir() -> Path:
    """``$FERRYMAN_ROUTERS_DIR`` or ``routers``."""
    return _setting("FERRYMAN_ROUTERS_DIR", "routers")


def encoder_dir() -> Path:
    """``$FERRYMAN_ENCODER_DIR`` or ``build/encoder``."""
    return _setting("FERRYMAN_ENCODER_DIR", "build/encoder")


def cache_dir() -> Path:
    """``$FERRYMAN_CACHE_DIR`` or ``build/cache``."""
    return _setting("FERRYMAN_CACHE_DIR", "build/cache")


def data_dir() -> Path:
    """``$FERRYMAN_DATA`` or ``../shared/data`` (from the working directory)."""
    return _setting("FERRYMAN_DATA", "../shared/data")
