"""The lab: data loaders, training, evaluation, calibration and selection of routers.

Everything here produces or judges the artifacts the scorer serves; nothing in ``scorer/`` or
``gateway/`` imports it (checked by ``make lint``). Training needs the ``train`` extra (torch).

- :mod:`lab.data`: the public data sets as typed records, prompt keys, folds, embedding caches
- :mod:`lab.train`: training jobs, ONNX export, ``ferryman train`` and ``ferryman build``
- :mod:`lab.eval`: metrics, scoring through a real scorer, ``ferryman eval`` and ``ferryman calibrate``
- :mod:`lab.select`: hyper-parameter selection by nested cross-fitting (``python -m lab.select.sw``)
"""
