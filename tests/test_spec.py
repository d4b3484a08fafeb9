"""Spec validation, overrides, profiles, cases and grid expansion."""
import dataclasses

import pytest
import yaml

from synergy_bench.registry import UserError
from synergy_bench.spec import apply_overrides, expand, load, read_spec, resolve

BASE = {"name": "t", "generator": {"name": "latent", "n_train": 128, "n_test": 64},
        "methods": ["cross"], "tasks": ["R", "S"], "seeds": 2}


def test_packaged_quick_spec_resolves():
    spec = resolve(read_spec(None))
    assert spec["name"] == "quick"
    assert [m["name"] for m in spec["methods"]] == ["cross", "cross_self", "factorcl", "comm", "infmasking"]
    assert [c["name"] for c in spec["controls"]] == ["raw", "random"]
    assert [m["name"] for m in spec["measures"]] == ["probe"]  # the default measure


def test_grid_expansion_over_generator_method_and_train():
    raw = apply_overrides(BASE, ["generator.k=[2,3]", "methods=[{name: infmasking, mask_ratio: [0.5, 0.7]}]",
                                 "train.epochs=[1,2]", "controls=[]"])
    runs = expand(resolve(raw))
    assert len(runs) == 2 * 2 * 2 * 2  # k x mask_ratio x epochs x seeds
    assert len({r.run_id for r in runs}) == len(runs)
    assert [r.index for r in runs] == list(range(len(runs)))
    assert {r.method_label for r in runs} == {"infmasking[mask_ratio=0.5,train.epochs=1]", "infmasking[train.epochs=1]",
                                              "infmasking[mask_ratio=0.5,train.epochs=2]", "infmasking[train.epochs=2]"}
    # the data seed is shared by all methods of a repetition; variants of one method start from
    # the same weights (their method seed), another method does not
    same = [r for r in runs if r.seed == 0 and r.generator_params["k"] == 2]
    assert len({r.data_seed for r in same}) == 1 and len({r.method_seed for r in same}) == 1
    other = expand(resolve(apply_overrides(BASE, ["methods=[cross, comm]", "controls=[]"])))
    assert len({r.method_seed for r in other if r.seed == 0}) == 2


def test_world_seed_is_the_same_at_every_sample_size_and_data_seed_is_not():
    runs = expand(resolve(apply_overrides(BASE, ["generator.n_train=[128, 256]", "seeds=1"])))
    small, large = (next(r for r in runs if r.generator_params["n_train"] == n and r.method == "cross")
                    for n in (128, 256))
    assert small.world_seed == large.world_seed and small.data_seed != large.data_seed
    assert small.run_id != large.run_id


def test_list_parameter_is_not_a_grid():
    spec = resolve(apply_overrides(BASE, ["probe.Cs=[0.1,1.0]"]))
    assert spec["measures"] == [{"name": "probe", "params": {**spec["measures"][0]["params"], "Cs": [0.1, 1.0]}}]
    assert len(expand(spec)) == 2 * 3  # seeds x (cross + raw + random)


def test_probe_block_and_measure_grid():
    spec = resolve(apply_overrides(BASE, ["measures=[{name: probe, kind: [linear, mlp]}]", "probe.holdout=0.3"]))
    params = [m["params"] for m in spec["measures"]]
    assert [p["kind"] for p in params] == ["linear", "mlp"] and {p["holdout"] for p in params} == {0.3}
    run = expand(spec)[0]
    assert [run.measure_label(i) for i in range(2)] == ["probe[holdout=0.3]", "probe[kind=mlp,holdout=0.3]"]


@pytest.mark.parametrize("sets, note", [
    (["seeds=[0, 0]"], "seeds: 1 duplicate"),
    (["methods=[cross, cross]"], "methods: 1 duplicate"),
    (["methods=[cross, {name: cross, temperature: 0.1}]"], "methods: 1 duplicate"),  # the default, spelled out
    (["generator.k=[2, 2]"], "generator[latent]: 1 duplicate"),
    (["controls=[raw, raw]"], "controls: 1 duplicate"),
    (["tasks=[R, R]"], "tasks: 1 duplicate"),
    (["train.epochs=[3, 3]"], "train: 1 duplicate"),
    (["measures=[probe, probe]"], "measures: 1 duplicate"),
])
def test_duplicate_grid_points_are_merged_with_a_note(sets, note):
    notes = []
    runs = expand(resolve(apply_overrides(BASE, sets), notes))
    assert len(notes) == 1 and note in notes[0]
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(len(set(r.tasks)) == len(r.tasks) for r in runs)


def test_a_yaml_alias_of_a_method_runs_once(tmp_path):
    path = tmp_path / "alias.yaml"
    path.write_text("name: a\ngenerator: {name: latent, n_train: 128, n_test: 64}\n"
                    "methods: [&m {name: comm, temperature: 0.2}, *m]\ncontrols: []\n")
    notes = []
    runs = expand(resolve(read_spec(str(path)), notes))
    assert [r.method_label for r in runs] == ["comm[temperature=0.2]"] and notes


def test_cases_are_a_union_and_shared_runs_merge_measures():
    raw = {"name": "c", "measures": ["pid_cluster"], "seeds": 1,
           "cases": [{"generator": {"name": "bitwise", "dist": ["xor", "and"], "n_train": 300}},
                     {"generator": {"name": "bitwise", "dist": "xor", "n_train": 300}, "measures": ["pid_batch"]},
                     {"generator": {"name": "latent", "n_train": 300}, "tasks": ["S"]}]}
    notes = []
    runs = expand(resolve(raw, notes))
    assert [(r.generator_label, [m for m, _ in r.measures], r.tasks) for r in runs] == [
        ("bitwise[n_train=300]", ["pid_cluster", "pid_batch"], ("Y",)),
        ("bitwise[dist=and,n_train=300]", ["pid_cluster"], ("Y",)),
        ("latent[n_train=300]", ["pid_cluster"], ("S",))]
    assert all(r.method is None and r.method_label == "" and not r.trained for r in runs)
    assert "1 run(s) appear in more than one case" in notes[0]


def test_observation_measures_run_once_per_point_beside_the_methods():
    spec = resolve(apply_overrides(BASE, ["measures=[probe, pid_cluster]", "seeds=1", "controls=[raw]"]))
    runs = expand(spec)
    assert [(r.method, [m for m, _ in r.measures]) for r in runs] == [
        (None, ["pid_cluster"]), ("raw", ["probe"]), ("cross", ["probe"])]


@pytest.mark.parametrize("sets, message", [
    (["epochs=3"], "unknown spec key 'epochs'"),
    (["trian.epochs=3"], "did you mean 'train'"),
    (["train.epoch=3"], "did you mean 'epochs'"),
    (["generator.k=1"], "generator[latent].k = 1 is out of range"),
    (["generator.k=two"], "is not a int"),
    (["generator.n_train=0"], "n_train = 0 is out of range"),
    (["methods=[nope]"], "unknown method 'nope'"),
    (["generator.name=nope"], "unknown generator 'nope'"),
    (["tasks=[Q]"], "task 'Q' is not a task of generator 'latent'"),
    (["tasks=[]"], "tasks = [] must be a non-empty list of tasks of generator 'latent'"),
    (["tasks=5"], "tasks = 5 must be a non-empty list"),
    (["seeds=0"], "seeds = 0 must be a count"),
    (["seeds=[]"], "seeds = [] must be a count"),
    (["seeds=[0, x]"], "seeds = [0, 'x'] must be a count"),
    (["seeds=1000000000"], "seeds = 1000000000 must be a count >= 1 (at most 100000)"),
    (["methods=[{name: infmasking, mask_ratio: 1.0}]"], "mask_ratio = 1.0 is out of range"),
    (["methods=[{name: infmasking, num_masks: 0}]"], "num_masks = 0 is out of range"),
    (["methods=5"], "methods = 5 must be a list"),
    (["methods=[5]"], "methods entry 5 must be a name or a mapping"),
    (["train=5"], "train = 5 must be a mapping"),
    (["probe=5"], "probe = 5 must be a mapping"),
    (["train.optimizer=sgd"], "choose one of ['adamw', 'adam']"),
    (["train.lr=.inf"], "train.lr = inf is not a finite number"),
    (["generator.noise=.inf"], "generator[latent].noise = inf is not a finite number"),
    (["methods=[{name: comm, temperature: .inf}]"], "methods[comm].temperature = inf is not a finite number"),
    (["probe.Cs=5"], "probe].Cs = 5 is not a list"),
    (["probe.Cs=[]"], "Cs = [] must be a non-empty list of numbers > 0"),
    (["probe.Cs=[.nan]"], "Cs = [nan]: element nan is not a finite number"),
    (["probe.Cs=[-1.0]"], "Cs = [-1.0] must be a non-empty list of numbers > 0"),
    (["probe.Cs=[a]"], "element 'a' is not a float"),
    (["probe.Cs=[[1.0]]"], "element [1.0] is not a float"),
    (["probe.hidden=[0]"], "hidden = [0] must be a non-empty list of widths >= 1"),
    (["probe.kind=svm"], "choose one of ['linear', 'mlp']"),
    (["probe.holdout=0.999"], "probe.holdout = 0.999 with generator.n_train = 128 leaves 1 samples to fit"),
    (["generator.n_train=3"], "raise generator.n_train to 21 or more"),
    (["controls=[cross]"], "is a trainable method"),
    (["generator.k=[]"], "empty list"),
    (["measures=[]"], "measures is empty"),
    (["measures=[nope]"], "unknown measure 'nope'"),
    (["measures=[pid_cluster]"], "read the generator's observations, not a representation"),
    (["measures=[pid_cluster]", "probe.holdout=0.3", "methods=[]", "controls=[]"], "probe settings are given"),
    (["device=tpu"], "device = 'tpu' is not valid"),
    (["device=5"], "device = 5 is not valid"),
    (["base_seed=x"], "base_seed = 'x' must be an integer"),
    (["name=a/b"], "spec name = 'a/b' must be"),
    (["name=''"], "spec name = '' must be"),
    (["name=.."], "spec name = '..' must be"),
    (["description=[1]"], "description = [1] must be a string"),
    (["generator.n_train=1000000000000"], "needs about"),
    (["cases=[]"], "cases is an empty list"),
    (["cases=[{seeds: 2, epochs: 3}]"], "unknown key in cases[0] 'epochs'"),
    (["plugins=[5]"], "plugins entry 5 must be"),
])
def test_bad_values_name_the_key(sets, message):
    with pytest.raises(UserError) as info:
        resolve(apply_overrides(BASE, sets))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_batch_estimator_refuses_a_size_its_splits_cannot_take():
    raw = {"name": "e", "measures": ["pid_batch"], "generator": {"name": "bitwise", "n_train": 6}}
    with pytest.raises(UserError, match="measure pid_batch with generator.n_train = 6: .* raise n_train"):
        resolve(raw)


@pytest.mark.parametrize("text, message", [
    (b"name: x\nmethods: [cross\n", "not valid YAML at line 3"),
    (b"\x00\x01\x02\xff\xfe binary", "is not text"),
    ("name: caf\u00e9\n".encode("latin-1"), "is not text"),
    (b"- a\n- b\n", "must be a YAML mapping"),
    (b"1: 2\n", "key 1 at the top is not a string"),
    (b"null: 1\n", "key None at the top is not a string"),
    (b"name: x\nmethods: [{name: cross, yes: 1}]\n", "key True at methods[0] is not a string (YAML reads yes"),
    (b"name: x\nmethods: " + b"[" * 3000 + b"]" * 3000 + b"\n", "nests deeper than 50 levels"),
    (b"a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
     b"f: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n", "holds more than 100000 values"),
])
def test_unreadable_spec_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    with pytest.raises(UserError) as info:
        resolve(read_spec(str(path)))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_utf16_spec_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "utf16.yaml"
    path.write_text("name: u16\nmethods: [cross]\n", encoding="utf-16")
    assert resolve(read_spec(str(path)))["name"] == "u16"


def test_missing_folder_and_empty_specs(tmp_path):
    with pytest.raises(UserError, match="neither a YAML file nor a packaged spec"):
        read_spec(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="is a folder"):
        read_spec(str(tmp_path))
    with pytest.raises(UserError, match="spec '' is empty"):
        read_spec("")
    with pytest.raises(UserError, match="must look like dotted.key=value"):
        apply_overrides(BASE, ["train.epochs"])
    with pytest.raises(UserError, match="must look like dotted.key=value"):
        apply_overrides(BASE, ["train..epochs=3"])
    with pytest.raises(UserError, match="methods is a list; set it whole"):
        apply_overrides(BASE, ["methods.cross.temperature=3"])


def test_profiles_merge_and_overrides_win(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nmethods: [cross]\ntrain: {epochs: 7, batch_size: 64}\n"
                    "profiles:\n  cpu: {train: {epochs: 2}}\n  paper: {train: {epochs: 100}, seeds: 5}\n")
    cpu = resolve(load(str(path)))
    assert cpu["profile"] == "cpu" and cpu["train"][0]["epochs"] == 2 and cpu["train"][0]["batch_size"] == 64
    paper = resolve(load(str(path), ["profile=paper"]))
    assert paper["train"][0]["epochs"] == 100 and paper["seeds"] == list(range(5))
    assert resolve(load(str(path), ["profile=paper", "train.epochs=3"]))["train"][0]["epochs"] == 3
    # an override of a profile applies once, before the profile is merged
    edited = resolve(load(str(path), ["profiles.cpu.train.epochs=4"]))
    assert edited["train"][0]["epochs"] == 4
    assert resolve(load(str(path), ["profiles.paper.seeds=2", "profile=paper"]))["seeds"] == [0, 1]
    with pytest.raises(UserError, match="choose one of cpu, paper"):
        load(str(path), ["profile=gpu"])
    with pytest.raises(UserError, match="defines no profiles"):
        load(None, ["profile=cpu"])


def test_plugins_of_a_spec_load_relative_to_its_folder(tmp_path, clean_registry):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "mine.py").write_text(
        "import synergy_bench as sb\n\n@sb.register_method\nclass Mine(sb.get_method('comm')):\n"
        "    name = 'spec_plugin_method'\n")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"name": "pl", "plugins": ["plug/mine.py"],
                                                     "methods": ["spec_plugin_method"], "controls": []}))
    spec = resolve(read_spec(str(tmp_path / "s.yaml")))
    assert spec["plugins"] == [str((tmp_path / "plug" / "mine.py").resolve())]
    assert [r.method for r in expand(spec)] == ["spec_plugin_method"]


def test_run_ids_ignore_parameters_left_at_their_defaults():
    a = expand(resolve(BASE))
    b = expand(resolve(apply_overrides(BASE, ["methods=[{name: cross, temperature: 0.1}]", "probe.holdout=0.2",
                                              "train.epochs=20"])))
    assert [r.run_id for r in a] == [r.run_id for r in b]
    c = expand(resolve(apply_overrides(BASE, ["probe.holdout=0.3"])))
    assert not {r.run_id for r in a} & {r.run_id for r in c}
    # a control's id does not depend on the training settings it does not use
    d = expand(resolve(apply_overrides(BASE, ["train.epochs=3"])))
    assert {r.run_id for r in a if not r.trained} == {r.run_id for r in d if not r.trained}
    assert dataclasses.replace(a[0], index=9).run_id == a[0].run_id
