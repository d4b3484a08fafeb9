"""Spec validation, overrides and grid expansion."""
import pytest

from synergy_bench.registry import UserError
from synergy_bench.spec import apply_overrides, expand, read_spec, resolve

BASE = {"name": "t", "generator": {"name": "latent", "n_train": 64, "n_test": 32},
        "methods": ["cross"], "tasks": ["R", "S"], "seeds": 2}


def test_packaged_quick_spec_resolves():
    spec = resolve(read_spec(None))
    assert spec["name"] == "quick"
    assert {m["name"] for m in spec["methods"]} == {"cross", "cross_self", "factorcl", "comm", "infmasking"}
    assert [c["name"] for c in spec["controls"]] == ["raw", "random"]


def test_grid_expansion_over_generator_method_and_train():
    raw = apply_overrides(BASE, ["generator.k=[2,3]", "methods=[{name: infmasking, mask_ratio: [0.5, 0.7]}]",
                                 "train.epochs=[1,2]", "controls=[]"])
    runs = expand(resolve(raw))
    assert len(runs) == 2 * 2 * 2 * 2  # k x mask_ratio x epochs x seeds
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.method_label for r in runs} == {"infmasking[mask_ratio=0.5]", "infmasking"}
    # the data seed is shared by all methods of a repetition, the method seed is not
    same = [r for r in runs if r.seed == 0 and r.generator_params["k"] == 2]
    assert len({r.data_seed for r in same}) == 1


def test_list_parameter_is_not_a_grid():
    spec = resolve(apply_overrides(BASE, ["probe.Cs=[0.1,1.0]"]))
    assert spec["probe"]["Cs"] == [0.1, 1.0]


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
    (["seeds=0"], "seeds = 0 must be a count"),
    (["methods=[{name: infmasking, mask_ratio: 1.0}]"], "mask_ratio = 1.0 is out of range"),
    (["methods=[{name: infmasking, num_masks: 0}]"], "num_masks = 0 is out of range"),
    (["train.optimizer=sgd"], "choose one of ['adamw', 'adam']"),
    (["controls=[cross]"], "is a trainable method"),
    (["generator.k=[]"], "empty list"),
])
def test_bad_values_name_the_key(sets, message):
    with pytest.raises(UserError, match=None) as info:
        resolve(apply_overrides(BASE, sets))
    assert message in str(info.value)


def test_malformed_and_missing_specs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmethods: [cross\n")
    with pytest.raises(UserError, match="not valid YAML"):
        read_spec(str(bad))
    with pytest.raises(UserError, match="neither a YAML file nor a packaged spec"):
        read_spec(str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="must look like dotted.key=value"):
        apply_overrides(BASE, ["train.epochs"])


def test_profiles_merge_and_overrides_win(tmp_path):
    from synergy_bench.spec import load

    path = tmp_path / "p.yaml"
    path.write_text("name: p\nmethods: [cross]\ntrain: {epochs: 7, batch_size: 64}\n"
                    "profiles:\n  cpu: {train: {epochs: 2}}\n  paper: {train: {epochs: 100}, seeds: 5}\n")
    cpu = resolve(load(str(path)))
    assert cpu["profile"] == "cpu" and cpu["train"][0]["epochs"] == 2 and cpu["train"][0]["batch_size"] == 64
    paper = resolve(load(str(path), ["profile=paper"]))
    assert paper["train"][0]["epochs"] == 100 and paper["seeds"] == list(range(5))
    assert resolve(load(str(path), ["profile=paper", "train.epochs=3"]))["train"][0]["epochs"] == 3
    with pytest.raises(UserError, match="choose one of cpu, paper"):
        load(str(path), ["profile=gpu"])
    with pytest.raises(UserError, match="defines no profiles"):
        load(None, ["profile=cpu"])
