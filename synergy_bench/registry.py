"""One registry for every plug-in: generators, methods and measures.

A plug-in is a class with a ``name`` and a ``Params`` dataclass, decorated with
:func:`register_generator`, :func:`register_method` or :func:`register_measure`. Importing the
module that defines it registers it. Three places are searched:

* the built-in packages ``generators``, ``synergy_bench.methods`` and ``synergy_bench.measures``:
  every module is imported by :func:`load_plugins`, so adding a file is enough;
* installed packages that declare a module in the entry-point group ``synergy_bench.plugins``
  (``[project.entry-points."synergy_bench.plugins"] my_methods = "my_pkg.methods"``), also imported
  by :func:`load_plugins`;
* files and modules named by the user (``--plugin``, a spec's ``plugins:``), imported by
  :func:`load_plugin`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import pkgutil
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

GENERATORS: dict[str, type] = {}
METHODS: dict[str, type] = {}
MEASURES: dict[str, type] = {}
_TABLES = {"generator": GENERATORS, "method": METHODS, "measure": MEASURES}

_PLUGIN_PACKAGES = ("generators", "synergy_bench.methods", "synergy_bench.measures")
ENTRY_POINT_GROUP = "synergy_bench.plugins"
_loaded = False
_plugins: dict[str, list[type]] = {}  # plug-in key (absolute path or module) -> classes it registered
_user_refs: list[str] = []  # keys of the plug-ins loaded through load_plugin, in order


class UserError(Exception):
    """A mistake in the user's input: printed as one line by the CLI, without traceback."""


def _register(table: dict[str, type], kind: str):
    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise TypeError(f"{kind} {cls.__name__} needs a Params dataclass")
        taken = table.get(cls.name)
        if taken is not None and taken is not cls:
            raise UserError(f"{kind} name {cls.name!r} is taken by {taken.__module__}.{taken.__qualname__}; "
                            f"give {cls.__qualname__} another name")
        table[cls.name] = cls
        return cls

    return deco


register_generator = _register(GENERATORS, "generator")
register_method = _register(METHODS, "method")
register_measure = _register(MEASURES, "measure")


def load_plugins() -> None:
    """Import every module of the built-in plug-in packages, then every installed package's module
    in the entry-point group ``synergy_bench.plugins``; once per process."""
    from importlib import metadata

    global _loaded
    if _loaded:
        return
    for pkg_name in _PLUGIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg_name}.{info.name}")
    _loaded = True  # before the entry points: a plug-in may look up a built-in while it loads
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if getattr(ep, "dist", None) is not None else "an installed package"
        _import_plugin(ep.value, f"{ep.value} (entry point {ep.name!r} of {dist})", ep.load, ep.module)


def load_plugin(ref: str, base: str | Path | None = None) -> list[type]:
    """Import a plug-in file or module, registering the classes it defines.

    Parameters
    ----------
    ref : str
        A ``FILE.py`` path (anything ending in ``.py`` or holding a path separator), relative to
        ``base`` (e.g. a spec's folder) or to the working directory; or a dotted module name on
        ``sys.path``.
    base : path, optional
        Folder that relative file paths start from.

    Returns
    -------
    list of type
        The classes the plug-in registered (the same list when it is loaded again, which imports
        nothing).

    Raises
    ------
    UserError
        One line naming the plug-in: it is not found, fails to import (with the exception and the
        plug-in's line), or registers a name another class holds.
    """
    load_plugins()  # the built-ins first: plug-ins subclass them, and their names are taken
    if ref.endswith(".py") or "/" in ref or os.sep in ref:
        path = Path(ref).expanduser()
        path = (path if path.is_absolute() else Path(base or ".") / path).resolve()
        if not path.is_file():
            where = f" (relative to {Path(base or '.').resolve()})" if not Path(ref).is_absolute() else ""
            raise UserError(f"plug-in file {ref!r} not found{where}; give the path of a .py file or a module name")
        key = str(path)
        stem = re.sub(r"\W", "_", path.stem)
        module = f"synergy_bench_plugin_{stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        classes = _import_plugin(key, key, lambda: _exec_file(module, path), module)
    else:
        if not all(part.isidentifier() for part in ref.split(".")):
            raise UserError(f"plug-in {ref!r} is neither a .py file nor a module name; "
                            "give e.g. my_method.py or my_package.my_method")
        key = ref
        classes = _import_plugin(key, f"module {ref}", lambda: importlib.import_module(ref), ref)
    if key not in _user_refs:
        _user_refs.append(key)
    return classes


def loaded_plugins() -> list[str]:
    """The plug-ins loaded by :func:`load_plugin` so far, as absolute file paths or module names
    (what a worker process passes to :func:`load_plugin` to register the same classes)."""
    return list(_user_refs)


def _exec_file(module: str, path: Path) -> None:
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod  # dataclasses and typing.get_type_hints look the module up here
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[module]
        raise


def _import_plugin(key: str, label: str, importer: Callable[[], Any], module: str) -> list[type]:
    """Run ``importer`` once per ``key``; on failure undo its registrations and raise a one-line
    UserError naming ``label``. The plug-in's classes: those it registered, and those registered
    from ``module`` or below it (imported before, e.g. a built-in package)."""
    if key in _plugins:
        return _plugins[key]
    before = {kind: dict(table) for kind, table in _TABLES.items()}
    try:
        importer()
    except (Exception, SystemExit) as err:
        for kind, table in _TABLES.items():
            table.clear()
            table.update(before[kind])
        if isinstance(err, UserError):
            raise UserError(f"plug-in {label}: {err}") from None
        raise UserError(f"plug-in {label} failed to import: {_one_line(err, key)}") from None
    _plugins[key] = [cls for kind, table in _TABLES.items() for name, cls in table.items()
                     if before[kind].get(name) is not cls or cls.__module__ == module
                     or cls.__module__.startswith(module + ".")]
    return _plugins[key]


def _one_line(err: BaseException, path: str) -> str:
    """``Type: first line of the message (line N)``, N the deepest line of ``path`` involved."""
    lines = str(err.msg if isinstance(err, SyntaxError) else err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    line = err.lineno if isinstance(err, SyntaxError) and err.filename == path else None
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename == path:
            line = frame.lineno
    return text + (f" (line {line})" if line else "")


def _lookup(table: dict[str, type], kind: str, name: str) -> type:
    load_plugins()
    if name not in table:
        raise UserError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(table))} "
                        f"(or load a {kind} of your own with --plugin FILE.py)")
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
