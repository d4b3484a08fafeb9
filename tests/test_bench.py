"""Benchmarks at tiny sizes: the references equal what they are compared with, the CSVs are
written, bad input is refused; the GPU path (only where CUDA exists) and train.amp."""
from __future__ import annotations

import csv
from functools import partial

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from synergy_bench import bench
from synergy_bench.cli import main
from synergy_bench.losses import infmasking_mask_loss
from synergy_bench.registry import UserError, get_method, make_params

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_METHOD = {"n_tokens": 4, "d_model": 16, "hidden": 32, "head_hidden": 32, "embed_dim": 16, "num_masks": 3}
TINY_RUN = ["--set", "generator.n_train=128", "--set", "generator.n_test=64", "--set", "train.epochs=1",
            "--set", "train.batch_size=64", "--set", "probe.Cs=[1.0]", "--set", "tasks=[R,S]",
            "--set", "seeds=1", "--quiet"]


def _unit(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=gen, dtype=torch.float64), dim=-1).requires_grad_()


@pytest.mark.parametrize("t,b,e,weight", [(6, 5, 8, 1.0), (1, 3, 4, 0.5), (4, 6, 3, 0.0)])
def test_covariance_reference_equals_mask_loss_and_gradients(t, b, e, weight):
    anchor, masked = _unit(b, e, seed=1), _unit(t, b, e, seed=2)
    ours, ref = infmasking_mask_loss(anchor, masked, weight, 0.2), bench.mask_loss_covariance(anchor, masked, weight, 0.2)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    for g, h in zip(torch.autograd.grad(ours, (anchor, masked)), torch.autograd.grad(ref, (anchor, masked))):
        torch.testing.assert_close(g, h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("general", [False, True])
def test_per_view_fusion_gives_the_same_loss_gradients_and_embedding(general):
    cls = get_method("infmasking")
    shapes = [(12,), (10,)]
    batched = cls(make_params(cls, TINY_METHOD, "m"), shapes, 3).double()
    per_view = bench.per_view(cls(make_params(cls, TINY_METHOD, "m"), shapes, 3).double(), general)
    assert isinstance(per_view.fusion, bench.PerViewFusion)
    gen = torch.Generator().manual_seed(0)
    v1, v2 = ([torch.randn(8, *s, generator=gen, dtype=torch.float64) for s in shapes] for _ in range(2))
    a, b = batched.loss(v1, v2, 0, 2), per_view.loss(v1, v2, 0, 2)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    a.backward()
    b.backward()
    for p, q in zip(batched.parameters(), per_view.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-10)  # float64 sums in another order
    batched.eval(), per_view.eval()
    torch.testing.assert_close(batched.embed(v1), per_view.embed(v1))


def test_bench_loss_rows_agree_and_measure_memory():
    """The two losses agree; the reference's per-sample covariances (B x E x E floats: 2 MiB at
    B = 8, E = 256, with their gradient) take far more memory than the loss as implemented."""
    rows = bench.bench_loss(repeats=1, batch=8, embed_dim=8, num_masks=3, memory_embed_dim=256)
    timing, memory = rows
    assert timing["measure"].startswith("seconds") and timing["max_abs_diff"] < 1e-5
    assert timing["ours"] > 0 and timing["reference"] > 0
    assert memory["measure"].startswith("peak bytes") and memory["reference"] >= 8 * 256 * 256 * 4
    assert memory["reference"] > 5 * memory["ours"]
    assert {"cpu", "cores", "threads", "torch", "device"} <= set(timing) and timing["threads"] == 1


def test_bench_train_rows_agree():
    defaults = ("d_model", "num_masks")          # the case label reads them from InfMasking's defaults
    sizes = (("tiny", 16, {k: v for k, v in TINY_METHOD.items() if k not in defaults}),)
    rows = bench.bench_train(repeats=1, sizes=sizes, epoch_sets=["generator.n_train=96", "train.batch_size=32"])
    assert len(rows) == 2 * len(bench.REFERENCES)
    for (name, _), step, epoch in zip(bench.REFERENCES, rows, rows[len(bench.REFERENCES):]):
        assert step["measure"] == "seconds per step" and step["max_abs_diff"] < 1e-5
        # float32 rounding differences of the first step grow through three Adam steps
        assert epoch["measure"] == "seconds per epoch" and epoch["max_abs_diff"] < 1e-3
        assert step["case"].endswith(f"reference: {name}") and "96 samples, batch 32" in epoch["case"]
        assert step["case"].startswith("tiny: step, B=16 E=16 d=64 T=6;")
    assert all(r["ours"] > 0 and r["reference"] > 0 and r["cpu_ratio"] is not None for r in rows)


def test_cli_bench_writes_csv_with_machine(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(bench.RUNNERS, "loss", partial(bench.bench_loss, batch=8, embed_dim=8, num_masks=2,
                                                       memory_embed_dim=None))
    assert main(["bench", "loss", "--repeats", "2", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "machine:" in text and f"wrote {tmp_path / 'loss.csv'}" in text
    with open(tmp_path / "loss.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert row["benchmark"] == "loss" and row["repeats"] == "2" and row["torch"] == torch.__version__
    assert float(row["max_abs_diff"]) < 1e-5 and row["device"] == "cpu"


@pytest.mark.parametrize("args, message", [
    (["bench", "speed"], "argument what: invalid choice: 'speed'"),
    (["bench", "loss", "--out", "/dev/null/x"], "--out /dev/null/x lies under a file"),
    (["bench", "loss", "--seed", "-1"], "--seed -1 must be an integer in 0 .. 2**63 - 1"),
    (["bench", "loss", "--repeats", "0"], "--repeats 0 must be >= 1"),
    (["bench", "loss", "--threads", "0"], "--threads 0 must be >= 1"),
    (["bench", "all", "--out", "x.csv"], "--out x.csv is one file but `bench all` writes 3"),
    (["bench", "loss", "--device", "cuda:9"], "device 'cuda:9' is not available"),
])
def test_cli_bench_bad_input_is_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_amp_is_refused_off_cuda(tmp_path, capsys):
    from synergy_bench.train import autocast

    with pytest.raises(UserError, match="train.amp = true needs a CUDA device"):
        autocast(torch.device("cpu"), True)
    assert main(["run", "--out", str(tmp_path / "r"), "--device", "cpu", "--set", "train.amp=true",
                 "--set", "methods=[cross]", *TINY_RUN]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train.amp = true needs a CUDA device" in err
    assert not (tmp_path / "r" / "results.csv").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_is_reproducible_and_amp_runs(tmp_path):
    sets = ["--device", "cuda", "--set", "methods=[comm, infmasking]", "--set", "controls=[random]",
            "--workers", "1", *TINY_RUN]
    frames = []
    for name, extra in (("a", []), ("b", []), ("amp", ["--set", "train.amp=true"])):
        assert main(["run", "--out", str(tmp_path / name), *sets, *extra]) == 0
        frames.append(pd.read_csv(tmp_path / name / "results.csv").sort_values(["run_id", "task", "metric"]))
    a, b, amp = frames
    assert set(a.device) == {"cuda"} and len(a) == len(amp)
    assert list(a.run_id) == list(b.run_id) and (a.value.to_numpy() == b.value.to_numpy()).all()
    assert amp[amp.metric == "balanced_accuracy"].value.between(0, 1).all()
    assert amp[amp.trained].final_loss.notna().all()
