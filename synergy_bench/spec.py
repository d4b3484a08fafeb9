"""Experiment specs: YAML -> validated, resolved spec -> grid of runs.

A spec names a generator (with parameters), methods (names or ``{name, ...params}``), control
rows, tasks, seeds and the training / probe settings. A list where a scalar parameter is expected
expands into a grid. ``--set a.b=value`` overrides take YAML values.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import typing
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from synergy_bench.registry import (
    UserError,
    get_generator,
    get_method,
    make_params,
    param,
)

TOP_KEYS = ("name", "description", "generator", "methods", "controls", "tasks", "seeds",
            "base_seed", "train", "probe", "device", "profile")


@dataclass
class TrainParams:
    """Settings of the one training loop (``synergy_bench.train.fit``)."""

    epochs: int = param(20, "passes over the training set", ge=0)
    batch_size: int = param(256, "samples per step", ge=2)
    lr: float = param(1e-3, "learning rate", gt=0)
    weight_decay: float = param(1e-4, "decoupled weight decay (AdamW) or L2 (Adam)", ge=0)
    optimizer: str = param("adamw", "optimiser", choices=("adamw", "adam"))
    threads: int = param(1, "torch CPU threads per run (1 keeps numbers identical across workers)", ge=1)
    amp: bool = param(False, "bf16 autocast in training and embedding (needs a CUDA device)")


@dataclass
class ProbeParams:
    """Linear probe: L-BFGS logistic regression, cost chosen on a hold-out of the training set."""

    holdout: float = param(0.2, "fraction of the training set held out to choose the cost", gt=0, lt=1)
    Cs: list = param([0.01, 0.1, 1.0, 10.0], "inverse regularisation strengths tried")
    max_iter: int = param(500, "L-BFGS iterations", ge=1)
    prediction_pid: bool = param(True, "add the exact PID of the probe's predictions (pred_* rows; "
                                       "seconds per task where the latents take hundreds of values)")


def packaged_specs() -> dict[str, Path]:
    """Name -> path of every spec shipped in ``experiments/``."""
    return {Path(str(p)).stem: Path(str(p)) for p in files("synergy_bench.experiments").iterdir()
            if str(p).endswith(".yaml")}


def read_spec(spec: str | None) -> dict[str, Any]:
    """Load a spec from a YAML path or a packaged spec name (None -> ``quick``)."""
    spec = spec or "quick"
    path = Path(spec)
    if not path.is_file():
        known = packaged_specs()
        if spec not in known:
            raise UserError(f"spec {spec!r} is neither a YAML file nor a packaged spec; "
                            f"packaged specs: {', '.join(sorted(known))}")
        path = known[spec]
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}" if where else ""
        raise UserError(f"spec {path} is not valid YAML{at}; fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"spec {path} must be a YAML mapping with keys {', '.join(TOP_KEYS)}")
    return raw


def apply_overrides(raw: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=yaml_value`` overrides to a raw spec dict (returns a copy)."""
    raw = copy.deepcopy(raw)
    for item in sets or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r} must look like dotted.key=value, e.g. train.epochs=5")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"--set {item!r}: the value {text!r} is not valid YAML") from None
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part, {}), dict):
                raise UserError(f"--set {key}: {part!r} is not a mapping in the spec")
            node = node.setdefault(part, {})
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
    """
    raw = apply_overrides(read_spec(spec), sets or [])
    profiles = raw.pop("profiles", None)
    if profiles is None:
        if "profile" in raw:
            raise UserError(f"profile {raw['profile']!r} given but spec {raw.get('name')!r} defines no "
                            "profiles; drop --set profile=...")
        return raw
    if not isinstance(profiles, dict) or not profiles or not all(isinstance(v, dict) for v in profiles.values()):
        raise UserError("spec key 'profiles' must map profile names to partial specs, "
                        "e.g. `profiles: {cpu: {train: {epochs: 5}}}`")
    name = raw.get("profile", next(iter(profiles)))
    if name not in profiles:
        raise UserError(f"profile {name!r} is not a profile of spec {raw.get('name')!r}; "
                        f"choose one of {', '.join(profiles)}")
    return {**apply_overrides(_merge(raw, profiles[name]), sets or []), "profile": name}


def _grid(cls: type, values: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Expand list values of scalar fields into the product grid; validate every point."""
    hints = typing.get_type_hints(cls.Params)
    keys = [k for k, v in values.items() if isinstance(v, list) and hints.get(k) is not list]
    for k in keys:
        if not values[k]:
            raise UserError(f"{where}.{k} is an empty list; give at least one value")
    points = []
    for combo in itertools.product(*[values[k] for k in keys]):
        point = {**values, **dict(zip(keys, combo))}
        points.append(dataclasses.asdict(make_params(cls, point, where)))
    return points


class _Holder:  # lets make_params validate the train / probe blocks like plug-in params
    def __init__(self, params: type):
        self.Params = params


def _entry(item: Any, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        rest = {k: v for k, v in item.items() if k != "name"}
        return item["name"], rest
    raise UserError(f"{where} entry {item!r} must be a name or a mapping with a 'name' key")


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a raw spec and fill defaults; the result is what is stored beside the results."""
    import difflib

    if raw.get("kind") == "estimators":
        raise UserError(f"spec {raw.get('name')!r} validates PID estimators; run it with "
                        f"`synergy-bench validate {raw.get('name')}`")
    for key in raw:
        if key not in TOP_KEYS:
            near = difflib.get_close_matches(key, TOP_KEYS, n=1)
            hint = f"did you mean {near[0]!r}? " if near else ""
            raise UserError(f"unknown spec key {key!r}; {hint}valid keys: {', '.join(TOP_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise UserError(f"spec name = {name!r} must be a non-empty string without '/'; add `name: my_experiment`")
    gname, gvals = _entry(raw.get("generator", "latent"), "generator")
    gcls = get_generator(gname)
    generators = _grid(gcls, gvals, f"generator[{gname}]")
    methods = []
    for item in raw.get("methods", []) or []:
        mname, mvals = _entry(item, "methods")
        methods += [(mname, p) for p in _grid(get_method(mname), mvals, f"methods[{mname}]")]
    controls = []
    for item in raw.get("controls", ["raw", "random"]) or []:
        cname, cvals = _entry(item, "controls")
        ccls = get_method(cname)
        if ccls.trainable:
            raise UserError(f"controls entry {cname!r} is a trainable method; list it under methods")
        controls += [(cname, p) for p in _grid(ccls, cvals, f"controls[{cname}]")]
    if not methods and not controls:
        raise UserError("spec lists no methods; add e.g. `methods: [cross, comm]`")
    per_point = [gcls(make_params(gcls, g, "generator"), 0).tasks for g in generators]
    known_tasks = [t for t in per_point[0] if all(t in tasks for tasks in per_point)]  # in every point
    tasks = raw.get("tasks", known_tasks)
    tasks = [tasks] if isinstance(tasks, str) else tasks
    for t in tasks or [None]:
        if t not in known_tasks:
            raise UserError(f"task {t!r} is not a task of generator {gname!r} at every grid point; "
                            f"choose from {known_tasks}")
    seeds = raw.get("seeds", 1)
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1 or
                                       isinstance(seeds, list) and seeds and
                                       all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise UserError(f"seeds = {seeds!r} must be a count >= 1 or a non-empty list of integers")
    seeds = list(range(seeds)) if isinstance(seeds, int) else seeds
    base_seed = raw.get("base_seed", 0)
    if not isinstance(base_seed, int) or isinstance(base_seed, bool):
        raise UserError(f"base_seed = {base_seed!r} must be an integer")
    device = raw.get("device", "auto")
    if not isinstance(device, str):
        raise UserError(f"device = {device!r} must be a string: auto, cpu, cuda or cuda:N")
    return {
        "name": name, "description": raw.get("description", ""), "profile": raw.get("profile"),
        "generator": {"name": gname, "grid": generators},
        "methods": [{"name": n, "params": p} for n, p in methods],
        "controls": [{"name": n, "params": p} for n, p in controls],
        "tasks": list(tasks), "seeds": seeds, "base_seed": base_seed, "device": device,
        "train": _grid(_Holder(TrainParams), raw.get("train", {}) or {}, "train"),
        "probe": make_params(_Holder(ProbeParams), raw.get("probe", {}) or {}, "probe").__dict__,
    }


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
    """One cell of the grid: everything a worker needs, as plain data."""

    experiment: str
    generator: str
    generator_params: dict
    method: str
    method_params: dict
    train: dict
    probe: dict
    tasks: tuple
    seed: int
    base_seed: int
    device: str
    index: int = 0  # position in the grid: orders tables and figures, not part of the run id

    @property
    def generator_label(self) -> str:
        return label(self.generator, self.generator_params, get_generator(self.generator).Params)

    @property
    def method_label(self) -> str:
        return label(self.method, self.method_params, get_method(self.method).Params)

    @property
    def data_seed(self) -> int:
        """Same data for every method of a repetition."""
        return derive_seed(self.base_seed, self.generator_label, self.seed)

    @property
    def method_seed(self) -> int:
        return derive_seed(self.base_seed, self.generator_label, self.method, self.seed)

    @property
    def run_id(self) -> str:
        method = get_method(self.method)
        key = [self.generator, changed(self.generator_params, get_generator(self.generator).Params),
               self.method, changed(self.method_params, method.Params),
               changed(self.train, TrainParams) if method.trainable else None,
               changed(self.probe, ProbeParams), list(self.tasks), self.seed, self.base_seed]
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def expand(spec: dict[str, Any]) -> list[Run]:
    """The grid of runs of a resolved spec: generator x (methods + controls) x train x seeds."""
    runs = []
    for gp in spec["generator"]["grid"]:
        for seed in spec["seeds"]:
            for entry in spec["controls"]:
                runs.append(Run(spec["name"], spec["generator"]["name"], gp, entry["name"],
                                entry["params"], spec["train"][0], spec["probe"],
                                tuple(spec["tasks"]), seed, spec["base_seed"], spec["device"]))
            for tp in spec["train"]:
                for entry in spec["methods"]:
                    runs.append(Run(spec["name"], spec["generator"]["name"], gp, entry["name"],
                                    entry["params"], tp, spec["probe"], tuple(spec["tasks"]),
                                    seed, spec["base_seed"], spec["device"]))
    return [dataclasses.replace(r, index=i) for i, r in enumerate(runs)]
