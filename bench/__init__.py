"""Benchmarks that print ratios measured side by side, and the local multi-replica run."""
