"""Hyper-parameter selection by nested cross-fitting on the golden labels (never on MT-Bench)."""
