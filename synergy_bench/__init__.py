"""synergy-bench: how much of the synergy between modalities does a method capture?"""
__version__ = "0.1.0"
