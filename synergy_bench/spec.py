"""Experiment specs: YAML -> validated, resolved spec -> grid of runs.

A spec names a generator (with parameters), methods and control rows (names or
``{name, ...params}``), the measures computed on every run (default: the probe), tasks, seeds and
the training settings. A list where a scalar parameter is expected expands into a grid; a grid
point listed twice runs once. ``--set a.b=value`` overrides take YAML values.

Keys of a spec (every one checked before anything runs):

``name``, ``description``
    The experiment's name (its results folder) and a sentence.
``generator``
    A generator name or ``{name, ...params}``.
``methods``, ``controls``
    Trained methods and untrained control rows (default controls: raw and random, where a
    measure reads representations).
``measures``
    What is computed on each run (default ``[probe]``); ``probe: {...}`` sets the parameters of
    every ``probe`` entry.
``tasks``, ``seeds``, ``base_seed``
    The tasks measured (default: all of the generator's), the repetitions (a count or a list),
    the seed every other seed derives from.
``train``, ``device``
    Settings of the one training loop (:class:`TrainParams`); ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
``profiles``, ``profile``
    Named partial specs merged over the rest; ``profile`` picks one (default: the first).
``cases``
    Partial specs each merged over the rest; the grid is the union of their grids (a run in
    several cases runs once, with the measures and tasks of all of them).
``plugins``
    Plug-in files (relative to the spec's folder) or modules to load first.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from synergy_bench.registry import (
    UserError,
    get_generator,
    get_measure,
    get_method,
    make_params,
    param,
)

CASE_KEYS = ("generator", "methods", "controls", "measures", "probe", "tasks", "seeds", "train")
TOP_KEYS = ("name", "description", *CASE_KEYS, "base_seed", "device", "profile", "profiles", "cases", "plugins")
DEFAULT_MEASURES = ("probe",)
DEFAULT_CONTROLS = ("raw", "random")
SIZE_FIELDS = ("n_train", "n_test")  # generator parameters that draw more samples of one world
MAX_NODES = 100_000  # values in a spec (aliases counted each time they are used)
MAX_DEPTH = 50
MAX_RUNS = 100_000
_NAME = re.compile(r"[A-Za-z0-9_+=-][A-Za-z0-9_.+=-]{0,99}")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass
class TrainParams:
    """Settings of the one training loop (``synergy_bench.train.fit``)."""

    epochs: int = param(20, "passes over the training set", ge=0)
    batch_size: int = param(256, "samples per step", ge=2)
    lr: float = param(1e-3, "learning rate", gt=0)
    weight_decay: float = param(1e-4, "decoupled weight decay (AdamW) or L2 (Adam)", ge=0)
    optimizer: str = param("adamw", "optimiser", choices=("adamw", "adam"))
    decay: str = param("weights", "what weight decay acts on: weights only (not biases, normalisation "
                       "parameters or scalars, as the published code) or all parameters",
                       choices=("weights", "all"))
    threads: int = param(1, "torch CPU threads per run (1 keeps numbers identical across workers)", ge=1)
    amp: bool = param(False, "bf16 autocast in training and embedding (needs a CUDA device)")
    select: str = param("last", "which weights are measured: last (the end of training) or best_test (the "
                                "epoch whose linear probes score best on the test set, checked every "
                                "eval_every epochs: the published protocol, optimistic)",
                        choices=("last", "best_test"))
    eval_every: int = param(1, "best_test: epochs between test-set probes", ge=1)


# ---------------------------------------------------------------------------- reading
def packaged_specs() -> dict[str, Path]:
    """Name -> path of every spec shipped in ``experiments/``."""
    return {Path(str(p)).stem: Path(str(p)) for p in files("synergy_bench.experiments").iterdir()
            if str(p).endswith(".yaml")}


def parse_yaml(data: bytes | str, what: str) -> Any:
    """YAML text -> data, or a one-line UserError naming ``what``: not text, not YAML, nested
    deeper than MAX_DEPTH, more than MAX_NODES values, or a mapping key that is not a string."""
    try:
        value = yaml.safe_load(data)
    except yaml.reader.ReaderError:
        raise UserError(f"{what} is not text (UTF-8 or UTF-16); save it as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{what} is not valid YAML{at} ({getattr(err, 'problem', None) or 'syntax'}); "
                        "fix the syntax") from None
    except RecursionError:
        raise UserError(f"{what} nests deeper than {MAX_DEPTH} levels; flatten it") from None
    check_shape(value, what)
    return value


def check_shape(value: Any, what: str) -> None:
    """Refuse data nested deeper than MAX_DEPTH, larger than MAX_NODES values (a YAML alias bomb
    is small as text and huge as data), or with a mapping key that is not a string."""
    stack, count = [(value, 0, "")], 0
    while stack:
        node, depth, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise UserError(f"{what} holds more than {MAX_NODES} values (YAML aliases count each time "
                            "they are used); make it smaller")
        if depth > MAX_DEPTH:
            raise UserError(f"{what} nests deeper than {MAX_DEPTH} levels (at {path or 'the top'}); flatten it")
        if isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    hint = (" (YAML reads yes, no, on, off, true and false as booleans)"
                            if isinstance(key, bool) else "")
                    raise UserError(f"{what}: key {key!r} at {path or 'the top'} is not a string{hint}; "
                                    f"quote it, e.g. '{key}'")
                stack.append((item, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(node))


def read_spec(spec: str | None) -> dict[str, Any]:
    """Load a spec from a YAML path or a packaged spec name (None -> ``quick``).

    Relative plug-in files of its ``plugins:`` are made absolute against the spec's folder.
    """
    spec = "quick" if spec is None else spec
    if not spec.strip():
        raise UserError("spec '' is empty; give a YAML path or a packaged spec name (see `synergy-bench "
                        "list`), or leave it out to run quick")
    path = Path(spec)
    if path.is_dir():
        raise UserError(f"spec {spec!r} is a folder; give a YAML file or a packaged spec name")
    if not path.is_file():
        known = packaged_specs()
        if spec not in known:
            raise UserError(f"spec {spec!r} is neither a YAML file nor a packaged spec; "
                            f"packaged specs: {', '.join(sorted(known))}")
        path = known[spec]
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"spec {path} cannot be read ({err.strerror})") from None
    raw = parse_yaml(data, f"spec {path}")
    if not isinstance(raw, dict):
        raise UserError(f"spec {path} must be a YAML mapping with keys such as name, generator, methods")
    if isinstance(raw.get("plugins"), list):
        raw["plugins"] = [_plugin_path(p, path.parent) for p in raw["plugins"]]
    return raw


def _plugin_path(ref: Any, base: Path) -> Any:
    if isinstance(ref, str) and (ref.endswith(".py") or "/" in ref) and not Path(ref).expanduser().is_absolute():
        return str((base / ref).resolve())
    return ref


def _key_of(item: str) -> str:
    return item.partition("=")[0]


def apply_overrides(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=yaml_value`` overrides to a raw spec dict (returns a copy)."""
    raw = copy.deepcopy(raw)
    for item in sets or []:
        key, sep, text = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise UserError(f"--set {item!r} must look like dotted.key=value, e.g. train.epochs=5")
        value = parse_yaml(text, f"--set {item!r}: the value")
        node = raw
        *parents, leaf = parts
        for i, part in enumerate(parents):
            child = node.get(part, {})
            if isinstance(child, str) and i == 0 and part in ("generator",):
                child = {"name": child}  # generator: latent  ->  generator: {name: latent}
            if not isinstance(child, dict):
                kind = "a list; set it whole, e.g. --set 'methods=[comm, {name: infmasking, mask_ratio: 0.5}]'" \
                    if isinstance(child, list) else f"{child!r}, not a mapping"
                raise UserError(f"--set {key}: {'.'.join(parts[:i + 1])} is {kind}")
            node[part] = child
            node = child
        node[leaf] = value
    return raw


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(spec: str | None, sets: list[str] | None = None) -> dict[str, Any]:
    """Read a spec, select its profile and apply ``--set`` overrides (which win over the profile).

    A spec may hold ``profiles: {cpu: {...}, paper: {...}}``: named partial specs merged over the
    rest. ``profile: NAME`` (or ``--set profile=NAME``) picks one; the first is the default.
    Overrides of ``profile`` and ``profiles.*`` apply before the profile is merged, the others
    after it.
    """
    sets = list(sets or [])
    early = [s for s in sets if _key_of(s) == "profile" or _key_of(s).startswith("profiles.")]
    raw = read_spec(spec)
    edits = [s for s in early if _key_of(s) != "profile"]
    if edits and not isinstance(raw.get("profiles"), dict):
        raise UserError(f"--set {_key_of(edits[0])}: spec {raw.get('name')!r} defines no profiles; set the keys "
                        "themselves, e.g. --set train.epochs=3")
    raw = apply_overrides(raw, early)
    profiles = raw.pop("profiles", None)
    late = [s for s in sets if s not in early]
    if profiles is None:
        if "profile" in raw:
            raise UserError(f"profile {raw['profile']!r} given but spec {raw.get('name')!r} defines no "
                            "profiles; drop --set profile=...")
        return apply_overrides(raw, late)
    if not isinstance(profiles, dict) or not profiles or not all(isinstance(v, dict) for v in profiles.values()):
        raise UserError("spec key 'profiles' must map profile names to partial specs, "
                        "e.g. `profiles: {cpu: {train: {epochs: 5}}}`")
    name = raw.get("profile", next(iter(profiles)))
    if name not in profiles:
        raise UserError(f"profile {name!r} is not a profile of spec {raw.get('name')!r}; "
                        f"choose one of {', '.join(profiles)}")
    return {**apply_overrides(_merge(raw, profiles[name]), late), "profile": name}


# ---------------------------------------------------------------------------- checking
def _unknown(key: str, valid, where: str) -> UserError:
    near = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return UserError(f"unknown {where} {key!r}; {hint}valid keys: {', '.join(valid)}")


def _finite_field(where: str, name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}.{name} = {value!r} is not a finite number; give a finite value")


def check_fields(cls: type, values: dict[str, Any], where: str) -> None:
    """Checks :func:`~synergy_bench.registry.make_params` leaves to the spec: every float is
    finite, and a list field holds a list of scalars of the types of its default's elements."""
    for f in dataclasses.fields(cls.Params):
        if f.name not in values:
            continue
        value = values[f.name]
        _finite_field(where, f.name, value)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, (list, tuple)):
            if not isinstance(value, list):
                raise UserError(f"{where}.{f.name} = {value!r} is not a list (default {list(default)!r}); "
                                f"give a list, e.g. {list(default) or '[...]'}")
            kinds = {type(d) for d in default} or {int, float, str, bool}
            for item in value:
                ok = type(item) in kinds or (float in kinds and type(item) is int)
                if not ok or isinstance(item, (list, dict)):
                    raise UserError(f"{where}.{f.name} = {value!r}: element {item!r} is not a "
                                    f"{' or '.join(sorted(k.__name__ for k in kinds))}")
                if isinstance(item, float) and not math.isfinite(item):
                    raise UserError(f"{where}.{f.name} = {value!r}: element {item!r} is not a finite number")


def _entry(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        return item["name"], {k: v for k, v in item.items() if k != "name"}
    raise UserError(f"{where} entry {item!r} must be a name or a mapping with a 'name' key")


def _list(value: Any, where: str, example: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise UserError(f"{where} = {value!r} must be a list, e.g. {where}: {example}")
    return value


def _unique(items: list, key, where: str, notes: list[str]) -> list:
    """``items`` without repeats (by ``key``), with a note where some were merged."""
    seen, out = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    if len(out) < len(items):
        notes.append(f"{where}: {len(items) - len(out)} duplicate grid point(s) merged (each runs once)")
    return out


def _json_key(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def _grid(cls: type, values: dict[str, Any], where: str, notes: list[str]) -> list[dict[str, Any]]:
    """Expand list values of scalar fields into the product grid; validate every point."""
    if not isinstance(values, dict):
        raise UserError(f"{where} = {values!r} must be a mapping of parameters, e.g. {{epochs: 5}}")
    hints = typing.get_type_hints(cls.Params)
    keys = [k for k, v in values.items() if isinstance(v, list) and hints.get(k) not in (list, tuple)]
    for k in keys:
        if not values[k]:
            raise UserError(f"{where}.{k} is an empty list; give at least one value")
    points = []
    for combo in itertools.product(*[values[k] for k in keys]):
        point = {**values, **dict(zip(keys, combo))}
        check_fields(cls, point, where)
        points.append(dataclasses.asdict(make_params(cls, point, where)))
    return _unique(points, _json_key, where, notes)


class _Holder:  # lets make_params validate the train block like plug-in params
    Params = TrainParams


def _entries(items: list, lookup, where: str, notes: list[str], probe: dict | None = None) -> list[dict]:
    """Named plug-in entries -> [{name, params}], grids expanded, repeats merged."""
    out = []
    for item in items:
        name, values = _entry(item, where)
        cls = lookup(name)
        if probe is not None and name == "probe":
            values = {**probe, **values}
        out += [{"name": name, "params": p} for p in _grid(cls, values, f"{where}[{name}]", notes)]
    return _unique(out, _json_key, where, notes)


def _seeds(value: Any) -> list[int]:
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(value) and 1 <= value <= MAX_RUNS:
        return list(range(value))
    if isinstance(value, list) and value and all(is_int(s) for s in value):
        return value
    raise UserError(f"seeds = {value!r} must be a count >= 1 (at most {MAX_RUNS}) or a non-empty list "
                    "of integers, e.g. seeds: 3 or seeds: [0, 1, 2]")


def _case(raw: dict[str, Any], where: str, notes: list[str], here: bool) -> dict[str, Any]:
    """One grid: generator x (methods, controls) x measures x train x seeds, checked."""
    pre = f"{where}." if where else ""
    gname, gvals = _entry(raw.get("generator", "latent"), f"{pre}generator")
    gcls = get_generator(gname)
    generators = _grid(gcls, gvals, f"{pre}generator[{gname}]", notes)
    probe = raw.get("probe")
    if probe is not None and not isinstance(probe, dict):
        raise UserError(f"{pre}probe = {probe!r} must be a mapping of probe settings, e.g. probe: {{holdout: 0.2}}")
    measures = _entries(_list(raw.get("measures", list(DEFAULT_MEASURES)), f"{pre}measures", "[probe]"),
                        get_measure, f"{pre}measures", notes, probe or {})
    if not measures:
        raise UserError(f"{pre}measures is empty; list at least one, e.g. measures: [probe]")
    if probe and not any(m["name"] == "probe" for m in measures):
        raise UserError(f"{pre}probe settings are given but {pre}measures lists no probe; add probe to "
                        "measures or drop the probe block")
    on_repr = any(get_measure(m["name"]).reads == "representation" for m in measures)
    methods = _entries(_list(raw.get("methods", []), f"{pre}methods", "[cross, comm]"), get_method,
                       f"{pre}methods", notes)
    controls = _entries(_list(raw.get("controls", list(DEFAULT_CONTROLS) if on_repr else []),
                              f"{pre}controls", "[raw, random]"), get_method, f"{pre}controls", notes)
    for c in controls:
        if get_method(c["name"]).trainable:
            raise UserError(f"{pre}controls entry {c['name']!r} is a trainable method; list it under methods")
    if on_repr and not methods and not controls:
        raise UserError(f"{pre}spec lists no methods; add e.g. `methods: [cross, comm]`")
    if not on_repr and (methods or controls):
        names = ", ".join(m["name"] for m in measures)
        raise UserError(f"{pre}methods and controls are listed but the measures ({names}) read the generator's "
                        "observations, not a representation; drop them or add a measure such as probe")
    train = _grid(_Holder, raw.get("train", {}) if raw.get("train") is not None else {}, f"{pre}train", notes)
    built = [gcls(make_params(gcls, g, "generator"), 0) for g in generators]
    known = [t for t in built[0].tasks if all(t in b.tasks for b in built)]  # in every point
    tasks = raw.get("tasks", known)
    tasks = [tasks] if isinstance(tasks, str) else tasks
    if not isinstance(tasks, list) or not tasks:
        raise UserError(f"{pre}tasks = {tasks!r} must be a non-empty list of tasks of generator {gname!r}: "
                        f"choose from {known}")
    for t in tasks:
        if t not in known:
            raise UserError(f"{pre}task {t!r} is not a task of generator {gname!r} at every grid point; "
                            f"choose from {known}")
    tasks = _unique(tasks, str, f"{pre}tasks", notes)
    seeds = _unique(_seeds(raw.get("seeds", 1)), int, f"{pre}seeds", notes)
    _check_sizes(gcls, generators, built, measures, tuple(tasks), f"{pre}generator[{gname}]", notes, here)
    return {"generator": {"name": gname, "grid": generators}, "methods": methods, "controls": controls,
            "measures": measures, "tasks": list(tasks), "seeds": seeds, "train": train}


def _check_sizes(gcls, points, built, measures, tasks, where, notes, here: bool) -> None:
    """Memory the samples need (on this machine; a note only where ``here`` is False), and each
    measure's own checks, at every generator point."""
    from synergy_bench.data import physical_memory, sample_bytes

    memory = physical_memory()
    for params, gen in zip(points, built):
        need = sample_bytes(gcls, params)
        if memory and need > memory:
            text = (f"{where} with n_train = {params.get('n_train')} and n_test = {params.get('n_test')} needs "
                    f"about {format_bytes(need)} for its samples, more than this machine's {format_bytes(memory)}")
            if here:
                raise UserError(f"{text}; lower n_train or n_test")
            notes.append(f"{text}; run it on a larger machine")
        for m in measures:
            cls = get_measure(m["name"])
            cls(make_params(cls, m["params"], f"measures[{m['name']}]")).check(gen, tasks)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _plugins(value: Any) -> list[str]:
    from synergy_bench.registry import load_plugin, loaded_plugins

    refs = _list(value, "plugins", "[my_method.py]")
    for ref in refs:
        if not isinstance(ref, str) or not ref.strip():
            raise UserError(f"plugins entry {ref!r} must be a .py file or a module name")
        load_plugin(ref)
    return loaded_plugins()


def resolve(raw: dict[str, Any], notes: list[str] | None = None, here: bool = True) -> dict[str, Any]:
    """Validate a raw spec and fill defaults; the result is what is stored beside the results.

    Every key and value is checked here, before anything runs; ``notes`` (if given) receives one
    line per repair made (duplicate grid points merged). With ``here`` False (a dry run, or a spec
    meant for another machine), samples too large for this machine's memory give a note instead
    of an error.
    """
    notes = [] if notes is None else notes
    if not isinstance(raw, dict):
        raise UserError(f"a spec must be a mapping, not {type(raw).__name__}")
    check_shape(raw, "spec")
    if "profiles" in raw:
        raise UserError("the spec still holds its profiles; read it with synergy_bench.spec.load, which merges "
                        "the chosen profile")
    for key in raw:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, "spec key")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"spec name = {name!r} must be 1-100 letters, digits or _.+=- (it names the results "
                        "folder); add e.g. `name: my_experiment`")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"description = {description!r} must be a string")
    plugins = _plugins(raw.get("plugins"))
    base_seed = raw.get("base_seed", 0)
    if not isinstance(base_seed, int) or isinstance(base_seed, bool):
        raise UserError(f"base_seed = {base_seed!r} must be an integer")
    device = raw.get("device", "auto")
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise UserError(f"device = {device!r} is not valid; use auto, cpu, cuda or cuda:N")
    profile = raw.get("profile")
    top = {"name": name, "description": description, "profile": profile, "plugins": plugins,
           "base_seed": base_seed, "device": device}
    shared = {k: v for k, v in raw.items() if k in CASE_KEYS}
    if "cases" not in raw:
        spec = {**top, **_case(shared, "", notes, here)}
    else:
        items = _list(raw["cases"], "cases", "[{generator: {name: latent, k: 2}}, ...]")
        if not items:
            raise UserError("cases is an empty list; give at least one partial spec, or drop the key")
        cases = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise UserError(f"cases[{i}] = {item!r} must be a mapping (a partial spec)")
            for key in item:
                if key not in CASE_KEYS:
                    raise _unknown(key, CASE_KEYS, f"key in cases[{i}]")
            cases.append(_case(_merge(shared, item), f"cases[{i}]", notes, here))
        spec = {**top, "cases": cases}
    runs = expand(spec, merged := [])
    if merged:
        notes.append(f"{len(merged)} run(s) appear in more than one case; each runs once, with the measures "
                     "and tasks of all")
    if len(runs) > MAX_RUNS:
        raise UserError(f"the grid has {len(runs)} runs, more than {MAX_RUNS}; make it smaller")
    return spec


# ---------------------------------------------------------------------------- runs
def changed(params: dict[str, Any], cls_params: type) -> dict[str, Any]:
    """The parameters that differ from their defaults (so a new defaulted field changes nothing)."""
    defaults = dataclasses.asdict(cls_params())
    return {k: v for k, v in params.items() if k not in defaults or defaults[k] != v}


def label(name: str, params: dict[str, Any], cls_params: type) -> str:
    """Stable readable label: the name plus the parameters that differ from their defaults."""
    diff = [f"{k}={v}" for k, v in changed(params, cls_params).items()]
    return f"{name}[{','.join(diff)}]" if diff else name


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts (never from the order of runs)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Run:
    """One cell of the grid: everything a worker needs, as plain data.

    ``method`` is None for a run whose measures read the generator's observations.
    ``measures`` holds (name, params) pairs.
    """

    experiment: str
    generator: str
    generator_params: dict
    method: str | None
    method_params: dict
    train: dict
    measures: tuple
    tasks: tuple
    seed: int
    base_seed: int
    device: str
    index: int = 0  # position in the grid: orders tables and figures, not part of the run id
    train_keys: tuple = ()  # training settings that vary in the grid: named in the method's label

    @property
    def generator_label(self) -> str:
        return label(self.generator, self.generator_params, get_generator(self.generator).Params)

    @property
    def method_label(self) -> str:
        """The method and its parameters off their defaults, then (``train.KEY=VALUE``) the training
        settings that vary in the grid."""
        if not self.method:
            return ""
        own = label(self.method, self.method_params, get_method(self.method).Params)
        train = [f"train.{k}={self.train[k]}" for k in self.train_keys]
        if not train:
            return own
        return f"{own[:-1]},{','.join(train)}]" if own.endswith("]") else f"{own}[{','.join(train)}]"

    @property
    def trained(self) -> bool:
        return bool(self.method) and get_method(self.method).trainable

    def measure_label(self, i: int) -> str:
        name, params = self.measures[i]
        return label(name, params, get_measure(name).Params)

    @property
    def world_seed(self) -> int:
        """The generator's world (random maps, embeddings, banks): the same at every sample size."""
        params = {k: v for k, v in self.generator_params.items() if k not in SIZE_FIELDS}
        return derive_seed(self.base_seed, label(self.generator, params, get_generator(self.generator).Params),
                           self.seed)

    @property
    def data_seed(self) -> int:
        """The samples: the same for every method of a repetition."""
        return derive_seed(self.base_seed, self.generator_label, self.seed)

    @property
    def method_seed(self) -> int:
        return derive_seed(self.base_seed, self.generator_label, self.method, self.seed)

    def key(self) -> list:
        """What makes the run: its id hashes this with the measures and tasks."""
        g = get_generator(self.generator).Params
        m = get_method(self.method).Params if self.method else None
        return [self.generator, changed(self.generator_params, g), self.method,
                changed(self.method_params, m) if m else None,
                changed(self.train, TrainParams) if self.trained else None, self.seed, self.base_seed]

    @property
    def run_id(self) -> str:
        measures = [[n, changed(p, get_measure(n).Params)] for n, p in self.measures]
        key = [*self.key(), measures, list(self.tasks)]
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _reads(name: str) -> str:
    return get_measure(name).reads


def expand(spec: dict[str, Any], merged: list | None = None) -> list[Run]:
    """The grid of runs of a resolved spec: per case, generator x seeds x (controls + train x
    methods) with the measures that read representations, and one run without a method per
    generator point and seed for the measures that read observations. Runs of several cases that
    differ only in measures and tasks are merged (their keys appended to ``merged``)."""
    runs: dict[str, Run] = {}
    for case in spec.get("cases") or [spec]:
        rep = tuple((m["name"], m["params"]) for m in case["measures"] if _reads(m["name"]) == "representation")
        obs = tuple((m["name"], m["params"]) for m in case["measures"] if _reads(m["name"]) == "observations")
        varying = tuple(k for k in case["train"][0] if len({json.dumps(t[k]) for t in case["train"]}) > 1)
        for gp in case["generator"]["grid"]:
            for seed in case["seeds"]:
                cells = [(None, {}, case["train"][0], obs)] if obs else []
                if rep:
                    cells += [(c["name"], c["params"], case["train"][0], rep) for c in case["controls"]]
                    cells += [(m["name"], m["params"], tp, rep) for tp in case["train"] for m in case["methods"]]
                for method, mparams, tp, measures in cells:
                    trained = bool(method) and get_method(method).trainable
                    run = Run(spec["name"], case["generator"]["name"], gp, method, mparams, tp, measures,
                              tuple(case["tasks"]), seed, spec["base_seed"], spec["device"],
                              train_keys=varying if trained else ())
                    key = _json_key(run.key())
                    if key in runs:
                        old = runs[key]
                        if merged is not None:
                            merged.append(key)
                        run = dataclasses.replace(
                            old, measures=tuple(_unique([*old.measures, *measures], _json_key, "", [])),
                            tasks=tuple(dict.fromkeys([*old.tasks, *run.tasks])))
                    runs[key] = run
    return [dataclasses.replace(r, index=i) for i, r in enumerate(runs.values())]
