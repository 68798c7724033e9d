"""Learning from the user's traffic, the gateway half (docs/learning.md).

``config`` (the ``learning:`` section) · ``service`` (:class:`Learning`, what the gateway core calls) ·
``shadow`` (sampling, budget, the other tier's answer) · ``judge`` (pairwise, both orders) ·
``feedback`` (ratings by response id) · ``store`` (SQLite / Redis) behind ``guard`` (timeouts, down
window, background writes) · ``records`` · ``redact`` · ``quality`` and ``metrics`` (the live figures) ·
``export`` / ``report`` / ``tenants`` (the ``ferryman learn`` subcommands of this half).
"""
