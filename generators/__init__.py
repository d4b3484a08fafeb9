"""Data generators; each module registers one (see ``synergy_bench.data.Generator``)."""
