"""Evaluation and calibration of routers (eval-only dependencies; no torch at import time).

- :mod:`scorer.eval.metrics`: quality vs strong-call-% curves, AUC, APGR, CPT, random and oracle
- :mod:`scorer.eval.scoring`: scoring prompt sets through the scorer's BatchScore RPC
- :mod:`scorer.eval.baselines`: simple cross-fitted baselines every router is checked against
- :mod:`scorer.eval.report`: PNG plots, Markdown table and JSON
- :mod:`scorer.eval.cli`: ``ferryman eval``; :mod:`scorer.eval.calibrate`: ``ferryman calibrate``
"""
