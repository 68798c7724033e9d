"""Evaluation and calibration of routers (eval-only dependencies; no torch at import time).

- :mod:`lab.eval.metrics`: quality vs strong-call-% curves, AUC, APGR, CPT, random and oracle
- :mod:`lab.eval.scoring`: scoring prompt sets through the scorer's BatchScore RPC
- :mod:`lab.eval.baselines`: simple cross-fitted baselines every router is checked against
- :mod:`lab.eval.report`: PNG plots, Markdown table and JSON
- :mod:`lab.eval.cli`: ``ferryman eval``; :mod:`lab.eval.calibrate`: ``ferryman calibrate``
"""
