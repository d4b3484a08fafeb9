"""synergy-bench: how much of the synergy between modalities does a method capture?

Stable public API
-----------------
The names below are importable from the top-level package; their meaning and signatures stay
fixed within a major version (everything else may change). They are loaded on first use, so
``import synergy_bench`` itself does not import torch.

``Method``, ``Generator``, ``Measure``
    Base classes of the three plug-in kinds: a representation-learning method, a data generator,
    a measure computed on a trained representation.
``register_method``, ``register_generator``, ``register_measure``
    Class decorators that register a plug-in under its ``name`` (a class with a ``Params``
    dataclass); a name can be held by one class only.
``param``
    A commented, range-checked ``Params`` field: ``k: int = param(2, "symbols per factor", ge=2)``.
``get_method``, ``get_generator``, ``get_measure``
    The registered class of a name (built-in plug-ins included), e.g. to subclass it.
``load_plugin``
    Import a plug-in file (``my_method.py``) or module, registering its classes; the command
    line's ``--plugin`` and a spec's ``plugins:`` call it.
``UserError``
    The one-line error for bad user input; plug-ins raise it for bad parameter values.

A method of one's own, in a file anywhere::

    from dataclasses import dataclass
    import synergy_bench as sb

    CoMM = sb.get_method("comm")

    @dataclass
    class Params(CoMM.Params):
        fused_weight: float = sb.param(2.0, "weight of the full-view term", ge=0)

    @sb.register_method
    class Weighted(CoMM):
        name = "weighted_comm"
        Params = Params
        ...

then ``synergy-bench run quick --plugin my_method.py --set "methods=[comm,weighted_comm]"``;
installed packages can declare such modules in the entry-point group ``synergy_bench.plugins``.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Method": "synergy_bench.methods.base",
    "Generator": "synergy_bench.data",
    "Measure": "synergy_bench.measures.base",
    **dict.fromkeys(["register_method", "register_generator", "register_measure", "param",
                     "get_method", "get_generator", "get_measure", "load_plugin", "UserError"],
                    "synergy_bench.registry"),
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'synergy_bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
