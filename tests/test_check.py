"""``synergy-bench check``: passes on the worked example, fails with the reason on plug-ins that
break one contract each; the device guard sees tensors made off the run's device."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from synergy_bench import check
from synergy_bench.registry import GENERATORS, METHODS, load_plugins

load_plugins()

ROOT = Path(__file__).resolve().parents[1]
BROKEN = Path(__file__).resolve().parent / "plugin_fixtures" / "broken_plugins.py"

pytestmark = pytest.mark.usefixtures("one_thread", "clean_registry")


def run_check(ref: str, **kw) -> tuple[int, dict[str, dict[str, str]], str]:
    """Exit status, {plug-in: {check title: 'PASS reason' or 'FAIL reason'}} and the summary."""
    lines: list[str] = []
    status = check.main(ref, device="cpu", out=lines.append, **kw)
    table: dict[str, dict[str, str]] = {}
    for line in lines[:-1]:
        if not line.startswith("  "):
            current = table.setdefault(line.split(" (")[0], {})
        else:
            verdict, _, rest = line.strip().partition("  ")
            title, _, reason = rest.partition(": ")
            current[title] = f"{verdict} {reason}"
    return status, table, lines[-1]


def test_the_worked_example_passes():
    status, table, summary = run_check("examples/my_method.py", base=ROOT)
    assert status == 0 and list(table) == ["method my_method"] and summary == "5 of 5 checks passed"
    results = table["method my_method"]
    assert len(results) == 5 and all(v.startswith("PASS") for v in results.values()), results


@pytest.mark.parametrize("kind,name", [("method", n) for n in sorted(METHODS)]
                         + [("generator", n) for n in sorted(GENERATORS)])
def test_every_built_in_passes_its_check(kind, name):
    lines: list[str] = []
    if kind == "method":
        checks = check.method_checks(METHODS[name], "cpu")
    else:
        checks = check.generator_checks(GENERATORS[name], "cpu")
    assert check.run_checks(checks, lines.append) == (5, 0), lines


def test_each_broken_contract_fails_with_its_reason():
    status, table, summary = run_check(str(BROKEN))
    assert status == 1 and summary == "16 of 20 checks passed, 4 failed"
    expected = {
        "method flat_loss": ("training lowers the loss", "the loss went from"),
        "method stray_device": ("stays on cpu", f"ones() at {BROKEN}:"),
        "method global_rng": ("same seed, same numbers", "the same seed gave losses"),
        "generator stray_views": ("views stay on cpu", f"rand() at {BROKEN}:"),
    }
    for plugin, (title, reason) in expected.items():
        results = table[plugin]
        assert results[title].startswith(f"FAIL {reason}"), results[title]
        others = {t: v for t, v in results.items() if t != title}
        assert len(others) == 4 and all(v.startswith("PASS") for v in others.values()), others
    assert "made a tensor on the default device, not on cpu" in table["method stray_device"]["stays on cpu"]


def test_a_plugin_that_does_not_load_or_registers_nothing_fails(tmp_path):
    (tmp_path / "bad.py").write_text("raise ValueError('no')\n")
    (tmp_path / "empty.py").write_text("x = 1\n")
    lines: list[str] = []
    assert check.main(str(tmp_path / "bad.py"), device="cpu", out=lines.append) == 1
    assert lines == [f"FAIL  loads: plug-in {tmp_path / 'bad.py'} failed to import: ValueError: no (line 1)"]
    lines.clear()
    assert check.main(str(tmp_path / "empty.py"), device="cpu", out=lines.append) == 1
    assert lines == [f"FAIL  plug-in {tmp_path / 'empty.py'} registers no method and no generator"]


def test_a_method_that_does_not_build_skips_the_rest(tmp_path):
    (tmp_path / "nobuild.py").write_text(
        "import synergy_bench as sb\n"
        "@sb.register_method\n"
        "class NoBuild(sb.get_method('comm')):\n"
        "    name = 'no_build'\n"
        "    def __init__(self, params, shapes, seed):\n"
        "        raise ValueError('needs three modalities')\n")
    status, table, summary = run_check(str(tmp_path / "nobuild.py"))
    results = table["method no_build"]
    assert status == 1 and results["builds from its Params"] == "FAIL ValueError: needs three modalities"
    assert summary == "0 of 5 checks passed, 1 failed, 4 skipped"
    assert list(results) == ["builds from its Params", "the other 4 checks"]


def test_the_device_guard():
    x = torch.ones(3)
    with check.on_device_only("cpu"):  # made on the inputs' device; 0-dim constants may be anywhere
        y = x * torch.tensor(2.0) + torch.zeros(3, device=x.device) + torch.arange(3, device=x.device)
    assert y.tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(check.CheckFailed, match=r"^arange\(\) at .*test_check.py:\d+ made a tensor on the default"):
        with check.on_device_only("cpu"):
            x[torch.arange(2)]
    with pytest.raises(check.CheckFailed, match=r"^Tensor.item\(\) at .* copies to the host"):
        with check.on_device_only("cpu"):
            x.sum().item()
    with pytest.raises(check.CheckFailed, match=r"^bool\(tensor\) at .* copies to the host"):
        with check.on_device_only("cpu"):
            if x.sum() > 0:
                pass
    with pytest.raises(check.CheckFailed, match=r"^zeros\(\) at .*made a tensor"):  # also when the mix raises
        with check.on_device_only("cpu"):
            x + torch.zeros(3)
    with pytest.raises(ZeroDivisionError):  # other errors pass through
        with check.on_device_only("cpu"):
            1 / 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_device_guard_on_cuda():
    x = torch.ones(3, device="cuda")
    with check.on_device_only("cuda"):
        x * torch.tensor(2.0)  # a 0-dim CPU tensor meets CUDA tensors
    with pytest.raises(check.CheckFailed, match="made a tensor on cpu, not on cuda"):
        with check.on_device_only("cuda"):
            torch.ones(3)
    with pytest.raises(check.CheckFailed, match="Tensor.cpu"):
        with check.on_device_only("cuda"):
            x.cpu()
