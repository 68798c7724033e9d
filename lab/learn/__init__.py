"""Learning from a user's judged traffic (``ferryman learn``; docs/learning.md).

- :mod:`lab.learn.traffic`: judged samples of one model pair from an Arena 55k-schema export
- :mod:`lab.learn.correction`: the serving router as a prior plus a learnt logistic correction
- :mod:`lab.learn.candidate`: the correction folded into a servable MF artifact
- :mod:`lab.learn.retrain`: held-back slice, fit, candidate version, calibration on the traffic
- :mod:`lab.learn.gate`: the promotion rule (paired bootstrap interval on ΔAPGR)
- :mod:`lab.learn.curve`: the learning-curve simulation
- :mod:`lab.learn.scoring`: artifacts scored in-process with the scorer's router code
"""
