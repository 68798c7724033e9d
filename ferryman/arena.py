"""The Chatbot Arena 55k schema: the file format between the gateway's learning store and the lab.

``ferryman learn export`` (gateway) writes judged comparisons in it, ``lab.data.battles`` reads it,
``ferryman data arena`` (lab) writes benchmark labels in it. Its columns, in order; a writer may
add columns after them and readers ignore columns they do not know (docs/learning.md).
"""

from __future__ import annotations

ARENA_COLUMNS: tuple[str, ...] = (
    "id",
    "model_a",
    "model_b",
    "prompt",  # JSON list of the user turns
    "response_a",
    "response_b",
    "winner_model_a",  # one-hot: 1 in exactly one of the three winner columns
    "winner_model_b",
    "winner_tie",
)
