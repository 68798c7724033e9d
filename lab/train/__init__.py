"""Training and ONNX export (``ferryman train``, ``ferryman build``).

Imports torch: never import from the serving path.
"""
