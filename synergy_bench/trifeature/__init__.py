"""Bimodal Trifeature, one job per module: ``render`` (the images), ``cache`` (rendered banks on
disk), ``pairs`` (split and pair sampler), ``truth`` (tasks and exact PID). The generator plug-in
that wires them lives in ``generators/trifeature.py``."""
