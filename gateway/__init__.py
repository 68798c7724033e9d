"""Ferryman gateway: policy, providers, resilience; gRPC and OpenAI-compatible HTTP."""
