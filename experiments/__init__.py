"""Packaged experiment specs (YAML); `synergy-bench run NAME` finds them here."""
