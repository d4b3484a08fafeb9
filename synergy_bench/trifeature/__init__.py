"""Bimodal Trifeature: renderer, disk cache and pair sampler (the generator plug-in lives in generators/trifeature.py)."""
