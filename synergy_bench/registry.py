"""One registry for every plug-in: generators, methods and measures.

A plug-in is one module that defines a class with a ``name`` and a ``Params`` dataclass and
decorates it with :func:`register_generator`, :func:`register_method` or
:func:`register_measure`. Modules are found by walking the ``generators`` package,
``synergy_bench.methods`` and ``synergy_bench.measures``, so adding a file is enough.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

GENERATORS: dict[str, type] = {}
METHODS: dict[str, type] = {}
MEASURES: dict[str, type] = {}

_PLUGIN_PACKAGES = ("generators", "synergy_bench.methods", "synergy_bench.measures")
_loaded = False


class UserError(Exception):
    """A mistake in the user's input: printed as one line by the CLI, without traceback."""


def _register(table: dict[str, type], kind: str):
    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise TypeError(f"{kind} {cls.__name__} needs a Params dataclass")
        if cls.name in table and table[cls.name] is not cls:
            raise TypeError(f"{kind} name {cls.name!r} registered twice")
        table[cls.name] = cls
        return cls

    return deco


register_generator = _register(GENERATORS, "generator")
register_method = _register(METHODS, "method")
register_measure = _register(MEASURES, "measure")


def load_plugins() -> None:
    """Import every module of the plug-in packages once (each registers itself)."""
    global _loaded
    if _loaded:
        return
    for pkg_name in _PLUGIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")
    _loaded = True


def _lookup(table: dict[str, type], kind: str, name: str) -> type:
    load_plugins()
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


def get_generator(name: str) -> type:
    return _lookup(GENERATORS, "generator", name)


def get_method(name: str) -> type:
    return _lookup(METHODS, "method", name)


def get_measure(name: str) -> type:
    return _lookup(MEASURES, "measure", name)


def param_fields(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, comment) for each field of a plug-in's Params dataclass."""
    out = []
    for f in dataclasses.fields(cls.Params):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def param(default: Any, help: str, **range_: Any) -> Any:
    """A commented Params field: ``k: int = param(2, "symbols per factor", ge=2)``.

    ``range_`` may hold ``ge``, ``gt``, ``le``, ``lt`` (numeric bounds) or ``choices``; they are
    checked by :func:`make_params` so every plug-in reports bad values the same way.
    """
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help, **range_})
    return dataclasses.field(default=default, metadata={"help": help, **range_})


_BOUNDS = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
           "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}


def _check_value(where: str, f: dataclasses.Field, hint: Any, value: Any) -> Any:
    meta = f.metadata
    bounds = " and ".join(f"{op} {meta[k]}" for k, (_, op) in _BOUNDS.items() if k in meta)
    fix = f"(allowed: {bounds or hint.__name__ if isinstance(hint, type) else hint}; default {f.default!r})"
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if hint in (int, float, bool, str) and not (isinstance(value, hint) and not
                                                (hint is not bool and isinstance(value, bool))):
        raise UserError(f"{where}.{f.name} = {value!r} is not a {hint.__name__} {fix}")
    if "choices" in meta and value not in meta["choices"]:
        raise UserError(f"{where}.{f.name} = {value!r} is not allowed; choose one of {list(meta['choices'])}")
    for key, (ok, op) in _BOUNDS.items():
        if key in meta and not ok(value, meta[key]):
            raise UserError(f"{where}.{f.name} = {value!r} is out of range {fix}")
    return value


def make_params(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build ``cls.Params`` from a dict, naming any unknown key or bad value in a UserError."""
    import difflib
    import typing

    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    hints = typing.get_type_hints(cls.Params)
    for key in values:
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise UserError(f"unknown key {where}.{key}; {hint}valid keys: {', '.join(fields)}")
    checked = {k: _check_value(where, fields[k], hints[k], v) for k, v in values.items()}
    try:
        return cls.Params(**checked)
    except ValueError as err:  # cross-field checks in __post_init__
        raise UserError(f"{where}: {err}") from None
