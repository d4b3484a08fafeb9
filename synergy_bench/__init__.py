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

A method of one's own lives in a file anywhere (a complete one, 30 lines: ``examples/my_method.py``
in the repository)::

    import synergy_bench as sb

    @sb.register_method
    class MyMethod(sb.get_method("comm")):  # or sb.Method; Params: a dataclass of sb.param fields
        name = "my_method"                  # a name no other class holds

        def loss(self, views1, views2, epoch, max_epochs, labels=None):
            ...

then ``synergy-bench run quick --plugin my_method.py --set "methods=[comm,infmasking,my_method]"``,
and ``synergy-bench check my_method.py`` runs the contract checks of :mod:`synergy_bench.check` on
it. Installed packages can list such modules in the entry-point group ``synergy_bench.plugins``::

    [project.entry-points."synergy_bench.plugins"]
    my_methods = "my_package.methods"
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
