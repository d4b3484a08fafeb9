"""The HTML pages: their numbers from hand-built results, that they are self-contained, and, in a
real headless Chromium, that they load without a console error, list every method and filter.

The browser tests skip only where no Chromium is installed (``apt-get install chromium``); with
``SYNERGY_BENCH_REQUIRE_CHROMIUM=1`` (set by ``.ci/run``, which installs it) they fail instead.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_plots import SEEDS, _inf, _label, _mask_value, results_frame

from synergy_bench import html_report, plots
from synergy_bench.registry import UserError
from synergy_bench.results import load

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0"]


# ---------------------------------------------------------------------------- folders
def _syn_truth(gp, task):
    return (gp["s"], gp["s"]) if task == "S" else (1.0, 0.0)


BITS = {"comm": 0.5, "supervised": 0.8, "cross": 0.0}  # bits on S per bit of exact S


def _value(gp, method, mp, task, metric, seed):
    if metric == "bits":
        return BITS[method] * gp["s"] + 0.01 * (seed - 1) if task == "S" else 0.9
    return {"comm": 0.8, "supervised": 0.9, "cross": 0.5}[method] + 0.02 * seed


def _synergy_df(grid=({"s": 1.0}, {"s": 2.0})):
    return results_frame("latent", list(grid), [("cross", {}), ("comm", {}), ("supervised", {})], ["R", "S"],
                         _value, _syn_truth)


def _folder(path: Path, df: pd.DataFrame, meta: dict | None = None, figures: bool = True) -> Path:
    path.mkdir(parents=True)
    df.to_csv(path / "results.csv", index=False)
    if meta is not None:
        (path / "meta.json").write_text(json.dumps(meta))
    if figures:
        plots.report(df, path / "figures")
    return path


def _rows(page: str) -> list[str]:
    """The method cell of each row of the results table."""
    table = page[page.index('<table id="results"'):]
    table = table[:table.index("</table>")]
    return [html.unescape(m) for m in re.findall(r'<td class="method"[^>]*>([^<]*)</td>', table)]


# ---------------------------------------------------------------------------- numbers
def test_summary_rows_hold_mean_se_and_the_seed_values():
    df = _synergy_df()
    frame, varying = html_report.summary_rows(df)
    assert varying == {"generator": ["s"], "method": []}
    assert len(frame) == 2 * 3 * 2 and list(frame.method_label[:2]) == ["cross", "cross"]  # grid order
    row = frame[(frame.method_label == "comm") & (frame.task == "S") & (frame["generator:s"] == "2.0")].iloc[0]
    values = [0.5 * 2.0 + 0.01 * (s - 1) for s in SEEDS]
    assert row["bits|mean"] == pytest.approx(np.mean(values))
    assert row["bits|se"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(3)) and row["bits|n"] == 3
    assert row["bits|values"] == [(s, pytest.approx(v)) for s, v in zip(SEEDS, values)]
    assert row.truth_synergy == 2.0 and row.chance == 0.5


def test_leaderboard_fractions_of_the_exact_s_and_of_the_ceiling():
    board = html_report.leaderboard(_synergy_df()).set_index("entry")
    assert list(board.index) == ["supervised", "comm", "cross"]  # most of S first
    assert list(board["rank"]) == [1, 2, 3] and board.at_defaults.all()
    comm = board.loc["comm"]
    # per seed bits / S = 0.5 + 0.01 (seed - 1) / S; the mean over the two settings is 0.5
    assert comm.exact_mean == pytest.approx(0.5) and comm.bits_mean == pytest.approx(0.75)
    se = [0.01 / s / np.sqrt(3) for s in (1.0, 2.0)]  # SE per setting; combined sqrt(sum SE^2) / 2
    assert comm.exact_se == pytest.approx(np.sqrt(sum(x * x for x in se)) / 2)
    assert comm.ceiling_mean == pytest.approx(0.5 / 0.8) and comm.ceiling_settings == 2
    assert board.loc["supervised"].ceiling_mean == pytest.approx(1.0)
    assert comm.acc_mean == pytest.approx(0.82) and comm.settings == 2 and comm.seeds == 3


def test_a_ceiling_below_its_minimum_is_no_ceiling(monkeypatch):
    monkeypatch.setitem(BITS, "supervised", 0.5 * html_report.CEILING_MIN)
    board = html_report.leaderboard(_synergy_df()).set_index("entry")
    assert np.isnan(board.loc["comm"].ceiling_mean) and board.loc["comm"].ceiling_settings == 0


def test_no_leaderboard_without_a_synergy_task():
    df = results_frame("latent", [{"k": 2}], [("comm", {})], ["R", "U1"], lambda *a: 0.7)
    assert html_report.leaderboard(df).empty


def test_rows_of_several_measures_are_told_apart():
    """A folder with two measures of the same methods shows each method once per measure (never
    a mean over measures); a folder with one measure shows the bare method labels."""
    df = results_frame("latent", [{"k": 2}], [("comm", {})], ["S"], lambda *a: 0.5)
    two = pd.concat([df.assign(measure_label="probe"), df.assign(measure_label="masked_probe", value=0.9)])
    frame, _ = html_report.summary_rows(html_report.shown_labels(two))
    assert sorted(frame.method_label) == ["comm · masked_probe", "comm · probe"]
    assert sorted(frame["balanced_accuracy|mean"]) == pytest.approx([0.5, 0.9])
    assert list(html_report.shown_labels(df.assign(measure_label="probe")).method_label.unique()) == ["comm"]


def test_variant_keys_name_only_what_a_folder_varies_off_the_defaults():
    methods = [_inf(0.7, 6, 1.0), _inf(0.3, 6, 1.0), _inf(0.7, 2, 1.0), ("comm", {"n_tokens": 10}),
               ("my_own_method", {"width": 3})]
    df = results_frame("latent", [{"k": 2}], methods, ["S"], lambda gp, m, mp, *a: 0.6)
    keys = html_report.variant_keys(df)
    assert keys[_label(*_inf(0.7, 6, 1.0))] == ("infmasking", True)  # the published setting is the default
    assert keys[_label(*_inf(0.3, 6, 1.0))] == ("infmasking[mask_ratio=0.3]", False)
    assert keys[_label(*_inf(0.7, 2, 1.0))] == ("infmasking[num_masks=2]", False)
    assert keys["comm[n_tokens=10]"] == ("comm", True)  # fixed for the folder: not a setting
    assert keys["my_own_method[width=3]"] == ("my_own_method[width=3]", True)  # not registered here


# ---------------------------------------------------------------------------- pages
def test_report_is_one_self_contained_page_naming_every_method(tmp_path):
    df = _synergy_df()
    folder = _folder(tmp_path / "exp", df, {"command": "synergy-bench run x.yaml", "torch": "2.13",
                                            "history": [{"commit": "abc", "command": "run"}]})
    page = html_report.write_report(folder).read_text()
    assert set(_rows(page)) == set(df.method_label) and len(_rows(page)) == 12
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert not re.search(r'<(img|script|iframe)[^>]*\ssrc="(?!data:)', page)  # nothing loaded from a file
    figures = sorted(p.name for p in (folder / "figures").glob("*.png"))
    assert page.count('src="data:image/png;base64,') == len(figures) >= 2
    assert "synergy-bench run x.yaml" in page and "meta.json does not name: commit" in page
    assert "<td><code>abc</code></td>" in page  # the history, as a table
    comm = df[(df.method_label == "comm") & (df.task == "S") & (df.metric == "bits")
              & (df.generator_label == "latent[s=2.0]")].value
    assert f"{comm.mean():.3f} ± {comm.std(ddof=1) / np.sqrt(3):.3f}" in page


def test_report_embeds_the_figures_of_every_measure(tmp_path):
    """A folder of several measures keeps each measure's figures in its own subfolder; the page
    shows them all, named by their path under figures/."""
    folder = _folder(tmp_path / "exp", _synergy_df())
    for sub in ("probe", "masked_probe"):
        (folder / "figures" / sub).mkdir()
        shutil.copy(next((folder / "figures").glob("*.png")), folder / "figures" / sub / "rus.png")
    page = html_report.write_report(folder).read_text()
    top = len(list((folder / "figures").glob("*.png")))
    assert page.count('src="data:image/png;base64,') == top + 2
    assert "figures/masked_probe/rus.png" in page and "figures/probe/rus.png" in page


def test_report_without_meta_or_figures_says_so(tmp_path):
    folder = _folder(tmp_path / "exp", _synergy_df(), meta=None, figures=False)
    page = html_report.write_report(folder).read_text()
    assert "has no meta.json" in page and "No figures in this folder" in page


def test_report_of_a_folder_without_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no results.csv"):
        html_report.write_report(tmp_path)


def test_index_links_every_folder_page_and_ranks_the_methods(tmp_path):
    _folder(tmp_path / "a", _synergy_df(), figures=False)
    _folder(tmp_path / "group" / "b", _synergy_df([{"s": 0.5}]), figures=False)
    _folder(tmp_path / "c", results_frame("latent", [{"k": 2}], [("comm", {})], ["Y"], lambda *a: 0.7), figures=False)
    page = html_report.write_index(tmp_path).read_text()
    links = set(re.findall(r'href="([^"]+)"', page))
    assert links == {"a/report.html", "group/b/report.html", "c/report.html"}
    assert all((tmp_path / link).is_file() for link in links)
    board = page[page.index('<table id="leaderboard"'):]
    board = board[:board.index("</table>")]
    assert re.findall(r'<td class="method">([^<]*)</td>', board) == ["supervised", "comm", "cross"]
    assert "no bits on a synergy task S" in page  # folder c


# ---------------------------------------------------------------------------- in a browser
CAPTURE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(e.message || ("failed to load " + (e.target && (e.target.src || e.target.href))));
}, true);
window.addEventListener("unhandledrejection", function (e) { window.__errors.push(String(e.reason)); });
["error", "warn", "log", "info"].forEach(function (k) {
  var f = console[k];
  console[k] = function () { window.__errors.push("console." + k + ": " + Array.prototype.join.call(arguments, " ")); f.apply(console, arguments); };
});
</script>"""

SHOWN_ACTIONS = """
var rows = function () { return Array.prototype.slice.call(document.querySelectorAll("#results tbody tr")); };
var shown = function () { return rows().filter(function (r) { return !r.hidden; }); };
var methodsOf = function (rs) { return rs.map(function (r) { return r.querySelector("td.method").textContent; }); };
var R = {total: rows().length, shownMethods: methodsOf(shown()), count: document.getElementById("results-count").textContent,
         dots: document.querySelectorAll("#chart circle").length};
"""

REPORT_ACTIONS = SHOWN_ACTIONS + """
var box = document.querySelector('.filters fieldset[data-dim="0"] input');
R.clicked = box.value;
box.click();
R.afterMethods = methodsOf(shown());
R.afterCount = document.getElementById("results-count").textContent;
R.afterDots = document.querySelectorAll("#chart circle").length;
box.click();
R.restored = shown().length;
document.querySelector('.filters fieldset[data-dim="1"] button[data-set="none"]').click();
R.noTask = shown().length;
R.noTaskChart = document.getElementById("chart").textContent;
document.querySelector('.filters fieldset[data-dim="1"] button[data-set="all"]').click();
var th = Array.prototype.slice.call(document.querySelectorAll("#results th")).filter(function (h) { return h.textContent === "balanced_accuracy"; })[0];
th.click();
var col = th.cellIndex;
R.sorted = shown().map(function (r) { return parseFloat(r.cells[col].getAttribute("data-v")); });
var cell = document.querySelector("#results td[data-tip]");
cell.dispatchEvent(new MouseEvent("mouseover", {bubbles: true, clientX: 5, clientY: 5}));
R.tip = document.getElementById("tip").hidden ? "" : document.getElementById("tip").textContent;
R.figures = Array.prototype.slice.call(document.images).map(function (i) { return i.complete && i.naturalWidth > 0; });
"""

INDEX_ACTIONS = """
var shown = function () {
  return Array.prototype.slice.call(document.querySelectorAll("#leaderboard tbody tr")).filter(function (r) { return !r.hidden; })
    .map(function (r) { return r.cells[0].textContent; });
};
var R = {first: shown()};
document.querySelector('#leaderboard').closest("section").querySelector('fieldset[data-dim="1"] button[data-set="all"]').click();
R.all = shown();
"""


def _chromium() -> str:
    exe = (os.environ.get("SYNERGY_BENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
           or shutil.which("google-chrome"))
    if exe:
        return exe
    if os.environ.get("SYNERGY_BENCH_REQUIRE_CHROMIUM"):
        pytest.fail("SYNERGY_BENCH_REQUIRE_CHROMIUM is set but no chromium is installed")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")


def browse(page: Path, actions: str, tmp_path: Path) -> dict:
    """Open a copy of ``page`` (beside it, so relative links hold) in headless Chromium, with the
    error capture first in its head and ``actions`` (JavaScript filling ``R``) run once the page
    and everything it loads have loaded; return ``R`` with ``errors`` (page errors and console calls), ``resources`` (URLs
    fetched) and ``console`` (the console lines Chromium logged)."""
    exe = _chromium()
    text = page.read_text()
    harness = (f"<script>window.addEventListener('load', function () {{ var R = {{}}; try {{ {actions} }} "
               "catch (err) { R.harnessError = String(err); }"
               "R.errors = window.__errors; R.resources = performance.getEntriesByType('resource').map(function (e) { return e.name; });"
               "var pre = document.createElement('pre'); pre.id = 'test-result'; pre.textContent = JSON.stringify(R);"
               "document.body.appendChild(pre); });</script>")
    copy = page.with_name("_browser_test.html")
    copy.write_text(text.replace("<head>", "<head>" + CAPTURE, 1).replace("</body>", harness + "</body>", 1))
    try:
        done = subprocess.run([exe, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom",
                               copy.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink()
    found = re.search(r'<pre id="test-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium printed no result (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(html.unescape(found.group(1)))
    result["console"] = [ln for ln in done.stderr.splitlines() if ":CONSOLE" in ln]
    return result


def _clean(result: dict) -> None:
    assert "harnessError" not in result, result.get("harnessError")
    assert result["errors"] == [] and result["console"] == []
    assert result["resources"] == []  # nothing fetched: scripts, styles and figures are inline


def test_report_in_chromium_loads_lists_every_method_and_filters(tmp_path):
    df = _synergy_df()
    folder = _folder(tmp_path / "exp", df, {"command": "synergy-bench run x.yaml"})
    result = browse(html_report.write_report(folder), REPORT_ACTIONS, tmp_path)
    _clean(result)
    methods = list(dict.fromkeys(df.method_label))
    assert result["total"] == 12 and set(result["shownMethods"]) == set(methods)
    assert result["count"] == "12 of 12 rows shown" and result["dots"] == 12
    # unticking the first method hides its rows only, in the table and in the chart
    assert result["clicked"] == methods[0]
    assert len(result["afterMethods"]) == 8 and methods[0] not in result["afterMethods"]
    assert result["afterCount"] == "8 of 12 rows shown" and result["afterDots"] == 8
    assert result["restored"] == 12 and result["noTask"] == 0 and "No row shown" in result["noTaskChart"]
    assert result["sorted"] == sorted(result["sorted"]) and len(result["sorted"]) == 12
    assert result["tip"].startswith("balanced_accuracy:") and "seed 2:" in result["tip"]
    assert result["figures"] and all(result["figures"])  # every figure decodes


def test_index_in_chromium_shows_methods_at_their_defaults_first(tmp_path):
    methods = [_inf(0.7, 6, 1.0), _inf(0.3, 6, 1.0), ("comm", {})]
    _folder(tmp_path / "mask", results_frame("latent", [{"k": 2}], methods, ["S"], _mask_value,
                                             lambda gp, t: (1.0, 1.0)), figures=False)
    _folder(tmp_path / "syn", _synergy_df(), figures=False)
    result = browse(html_report.write_index(tmp_path), INDEX_ACTIONS, tmp_path)
    _clean(result)
    assert set(result["first"]) == {"infmasking", "comm", "supervised", "cross"}
    assert set(result["all"]) == set(result["first"]) | {"infmasking[mask_ratio=0.3]"}


COMMITTED = sorted(p.parent for p in (REPO / "results").rglob("results.csv"))


@pytest.mark.parametrize("folder", COMMITTED, ids=[p.relative_to(REPO / "results").as_posix() for p in COMMITTED])
def test_committed_report_in_chromium(folder, tmp_path):
    """Each committed folder's page (written in a copy) loads cleanly and lists all its methods."""
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.pdf"))
    page = html_report.write_report(copy)
    result = browse(page, SHOWN_ACTIONS, tmp_path)
    _clean(result)
    assert set(result["shownMethods"]) == set(html_report.shown_labels(load(folder)).method_label)
