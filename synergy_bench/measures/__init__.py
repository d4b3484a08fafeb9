"""Measures: what is computed on a trained representation (registered plug-ins)."""
