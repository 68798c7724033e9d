"""Ferryman scorer: stateless gRPC service serving RouteLLM-style routers as ONNX models."""
