"""Routers that run inside the gateway (the scorer's routers run in the scorer): the causal-LLM router."""
