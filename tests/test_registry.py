"""Plug-ins from outside the package: files, modules and installed entry points register their
classes; failures name the plug-in in one line; the top-level API is there and cheap to import."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from synergy_bench import registry
from synergy_bench.registry import (
    MEASURES,
    METHODS,
    UserError,
    get_measure,
    get_method,
    load_plugin,
    load_plugins,
    loaded_plugins,
    register_measure,
)

METHOD_FILE = """
from __future__ import annotations
from dataclasses import dataclass
import synergy_bench as sb

CoMM = sb.get_method("comm")

@dataclass
class Params(CoMM.Params):
    extra: float = sb.param(0.5, "an extra weight", ge=0.0)

@sb.register_method
class {cls}(CoMM):
    name = "{name}"
    Params = Params
"""


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_a_file_registers_its_method_once(tmp_path, clean_registry):
    path = write(tmp_path / "mine.py", METHOD_FILE.format(cls="Mine", name="mine")
                 + "\nimport pathlib\nwith open(pathlib.Path(__file__).with_suffix('.log'), 'a') as f: f.write('x')\n")
    classes = load_plugin(str(path))
    cls = get_method("mine")
    assert classes == [cls] and issubclass(cls, get_method("comm"))
    assert loaded_plugins() == [str(path)]
    # Params of a plug-in module (string annotations) go through the usual checks
    assert registry.make_params(cls, {"extra": 2}, "mine").extra == 2.0
    with pytest.raises(UserError, match="extra = -1.0 is out of range"):
        registry.make_params(cls, {"extra": -1.0}, "mine")
    # again, by a relative path from another base: the same file, nothing imported twice
    assert load_plugin("mine.py", base=tmp_path) == [cls]
    assert (tmp_path / "mine.log").read_text() == "x" and loaded_plugins() == [str(path)]


def test_a_module_on_the_path_registers_its_method(tmp_path, monkeypatch, clean_registry):
    write(tmp_path / "ext_plugin_mod.py", METHOD_FILE.format(cls="ByModule", name="by_module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_plugin("ext_plugin_mod") == [get_method("by_module")]
    assert loaded_plugins() == ["ext_plugin_mod"]


def test_a_plugin_that_fails_to_import_names_its_file_and_line(tmp_path, clean_registry):
    text = METHOD_FILE.format(cls="Early", name="early") + "\nimport no_such_module_xyz\n"
    path = write(tmp_path / "broken.py", text)
    with pytest.raises(UserError) as err:
        load_plugin(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "No module named 'no_such_module_xyz'" in msg
    assert f"(line {METHOD_FILE.count(chr(10)) + 2})" in msg
    assert "early" not in METHODS and loaded_plugins() == []  # undone: nothing half-registered
    syntax = write(tmp_path / "syntax.py", "x = (\n")
    with pytest.raises(UserError, match=r"syntax\.py failed to import: SyntaxError: .*\(line 1\)$"):
        load_plugin(str(syntax))


def test_a_taken_name_names_the_file_and_the_name(tmp_path, clean_registry):
    path = write(tmp_path / "taken.py", METHOD_FILE.format(cls="Impostor", name="comm"))
    with pytest.raises(UserError) as err:
        load_plugin(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "'comm' is taken by synergy_bench.methods.comm.CoMM" in msg
    assert get_method("comm").__module__ == "synergy_bench.methods.comm"


def test_plugin_refs_that_do_not_resolve(tmp_path, clean_registry):
    with pytest.raises(UserError, match=r"'nope\.py' not found \(relative to .*\)"):
        load_plugin("nope.py", base=tmp_path)
    with pytest.raises(UserError, match="neither a .py file nor a module name"):
        load_plugin("my-plugin")
    with pytest.raises(UserError, match="module no_such_plugin_xyz failed to import: ModuleNotFoundError"):
        load_plugin("no_such_plugin_xyz")


def fake_distribution(root, name, entry_points):
    """An installed distribution ``name`` (a dist-info folder on sys.path) with entry points."""
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}\n")


def test_installed_entry_points_are_loaded(tmp_path, monkeypatch, clean_registry):
    write(tmp_path / "ext_plugin_ep.py", METHOD_FILE.format(cls="FromEntryPoint", name="from_ep"))
    fake_distribution(tmp_path, "fake_synergy_ext", {"mine": "ext_plugin_ep"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._loaded = False
    load_plugins()
    assert get_method("from_ep").__module__ == "ext_plugin_ep"
    assert registry._plugins["ext_plugin_ep"] == [get_method("from_ep")]
    assert loaded_plugins() == []  # installed: every process finds it by itself


def test_a_broken_entry_point_names_the_distribution(tmp_path, monkeypatch, clean_registry):
    write(tmp_path / "ext_plugin_bad.py", "raise RuntimeError('boom')\n")
    fake_distribution(tmp_path, "fake_synergy_bad", {"bad": "ext_plugin_bad"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._loaded = False
    with pytest.raises(UserError, match=r"^plug-in ext_plugin_bad \(entry point 'bad' of fake_synergy_bad\) "
                                        r"failed to import: RuntimeError: boom$"):
        load_plugins()


def test_measures_register_like_the_other_kinds(clean_registry):
    @dataclasses.dataclass
    class P:
        bins: int = registry.param(8, "histogram bins", ge=2)

    @register_measure
    class Entropy:
        name = "test_entropy"
        Params = P

    assert get_measure("test_entropy") is Entropy and MEASURES["test_entropy"] is Entropy
    with pytest.raises(UserError, match="unknown measure 'nope'"):
        get_measure("nope")
    with pytest.raises(TypeError, match="needs a Params dataclass"):
        register_measure(type("NoParams", (), {"name": "no_params"}))

    class Other(Entropy):
        pass

    with pytest.raises(UserError, match="measure name 'test_entropy' is taken by .*Entropy; give .*Other another name"):
        register_measure(Other)


def test_the_public_api_is_lazy():
    code = ("import sys, synergy_bench as sb; assert 'torch' not in sys.modules; "
            "from synergy_bench import registry, methods, data; "
            "names = ['Method', 'Generator', 'register_method', 'register_generator', 'register_measure', "
            "'param', 'get_method', 'get_generator', 'get_measure', 'load_plugin', 'UserError']; "
            "assert set(names) <= set(sb.__all__) and set(names) <= set(dir(sb)); "
            "assert sb.Method is sys.modules['synergy_bench.methods.base'].Method; "
            "assert sb.Generator is data.Generator and sb.get_method is registry.get_method; "
            "assert all(getattr(sb, n) is getattr(registry, n) for n in names[2:])")
    subprocess.run([sys.executable, "-c", code], check=True)
    import synergy_bench

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        synergy_bench.nope  # noqa: B018
