"""Test helpers that are real servers on loopback (fake LLM providers), shared by tests and benchmarks."""
