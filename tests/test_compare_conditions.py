"""harness.compare --columns KEY: a study's condition as pivot columns and as the x axis of conditions.png."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.compare import main as compare_main
from harness.run import execute


def test_pivot_and_conditions_plot(make_cfg, store, tmp_path, capsys):
    results = {}
    for fraction in ("0.0", "0.3"):
        for loss in ("mse", "huber"):
            for seed in (0, 1):
                cfg = make_cfg(f"loss={loss}", f"data.outlier_fraction={fraction}", f"seed={seed}", "trainer.epochs=3",
                               "tracking.experiment=conditions")
                results.setdefault((loss, fraction), []).append(execute(cfg).test["rmse"])
    out = tmp_path / "cmp"
    code = compare_main(["--experiment", "conditions", "--tracking-uri", store, "--by", "loss", "--metric", "test/rmse",
                         "--columns", "data.outlier_fraction", "--out", str(out)])
    assert code == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith("pivot.md, conditions.png") and (out / "conditions.png").stat().st_size > 10_000
    pivot = (out / "pivot.md").read_text().splitlines()
    assert pivot[0] == "| loss | data.outlier_fraction=0.0 | data.outlier_fraction=0.3 |"
    for line in pivot[2:]:  # every cell is the mean ± std of that arm's seeds at that condition
        loss, *cells = [c.strip() for c in line.strip("|").split("|")]
        for fraction, cell in zip(("0.0", "0.3"), cells):
            values = results[loss, fraction]
            assert cell == f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
    assert [line.split("|")[1].strip() for line in pivot[2:]] == ["huber", "mse"]  # best first, over both conditions
    assert len(MlflowClient(tracking_uri=store).search_runs(
        [MlflowClient(tracking_uri=store).get_experiment_by_name("conditions").experiment_id])) == 8


def test_where_keeps_one_condition_for_paired_statistics(make_cfg, store, tmp_path, capsys):
    for fraction in ("0.0", "0.3"):
        for loss in ("mse", "huber"):
            for seed in (0, 1, 2):
                execute(make_cfg(f"loss={loss}", f"data.outlier_fraction={fraction}", f"seed={seed}", "trainer.epochs=3",
                                 "tracking.experiment=where"))
    out = tmp_path / "cmp"
    assert compare_main(["--experiment", "where", "--tracking-uri", store, "--by", "loss", "--metric", "test/rmse",
                         "--where", "data.outlier_fraction=0.30", "--baseline", "huber", "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["n"]) == [3, 3]  # 3 seeds per arm: only the runs at 0.3 (0.30 matches 0.3 as a number)
    assert "several finished runs" not in (out / "comparison.md").read_text()
    # without --where, each (arm, seed) has a run per fraction: the legend names what the pairing pools
    assert compare_main(["--experiment", "where", "--tracking-uri", store, "--by", "loss", "--metric", "test/rmse",
                         "--baseline", "huber", "--out", str(out)]) == 0
    assert ("6 (arm, seed) pairs had several finished runs; their values were averaged before pairing. Those runs "
            "differ in data.outlier_fraction: the paired columns pool these settings; for paired statistics per "
            "setting, keep one value with `--where KEY=VALUE` or add the key to `--by`."
            ) in " ".join((out / "comparison.md").read_text().split())
    with pytest.raises(SystemExit, match=r"no run has data.outlier_fraction=0.5; values: \['0.0', '0.3'\]"):
        compare_main(["--experiment", "where", "--tracking-uri", store, "--where", "data.outlier_fraction=0.5"])
    # alternatives: both fractions of huber only (6 runs, one arm per fraction with --by)
    assert compare_main(["--experiment", "where", "--tracking-uri", store, "--by", "loss,data.outlier_fraction",
                         "--metric", "test/rmse", "--where", "data.outlier_fraction=0.0|0.3,loss=huber", "--out", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert sorted(table["n"]) == [3, 3] and len(table) == 2 and set(table.iloc[:, 0].str.startswith("huber")) == {True}
    with pytest.raises(SystemExit, match=r"no run has loss=hubr; values: \['huber', 'mse'\]"):
        compare_main(["--experiment", "where", "--tracking-uri", store, "--where", "loss=huber|hubr"])


@pytest.fixture
def saved(monkeypatch) -> dict:
    """Every figure compare saves, by file name, as the Figure it drew (saved to disk as well)."""
    from matplotlib.figure import Figure

    figures = {}
    real_savefig = Figure.savefig

    def keep_and_save(fig, path, **kw):
        figures[Path(path).name] = fig
        return real_savefig(fig, path, **kw)

    monkeypatch.setattr(Figure, "savefig", keep_and_save)
    return figures


def test_conditions_plot_keeps_each_arms_colour_across_panels(make_cfg, store, tmp_path, saved):
    """Each panel lists the arms best first; an arm's line keeps one colour in every panel all the same."""
    for fraction in ("0.1", "0.3"):
        for loss in ("mse", "huber"):
            execute(make_cfg(f"loss={loss}", f"data.outlier_fraction={fraction}", "trainer.epochs=3",
                             "trainer.grad_share=true", "tracking.experiment=colours"))
    assert compare_main(["--experiment", "colours", "--tracking-uri", store, "--by", "loss", "--metric",
                         "test/rmse,grad_share/outliers", "--columns", "data.outlier_fraction",
                         "--out", str(tmp_path / "cmp")]) == 0
    panels = [{line.get_label(): line.get_color() for line in ax.get_lines()} for ax in saved["conditions.png"].axes]
    orders = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in saved["conditions.png"].axes]
    assert orders == [["huber", "mse"], ["mse", "huber"]]  # huber has the lower rmse, mse spends more on outliers
    assert panels[0] == panels[1] and panels[0]["huber"] != panels[0]["mse"]


def test_figures_are_drawn_per_condition_never_pooled_over_it(make_cfg, store, tmp_path, saved):
    """With --columns, bars.png has a bar per arm and condition (each the mean and std of that condition's seeds),
    curves.png, paired.png and grad_share.png a row of panels per condition, each drawn from that condition's runs."""
    runs = {}
    for fraction in ("0.1", "0.3"):
        for loss in ("mse", "huber"):
            for seed in (0, 1):
                result = execute(make_cfg(f"loss={loss}", f"data.outlier_fraction={fraction}", f"seed={seed}",
                                          "trainer.epochs=3", "trainer.grad_share=true", "tracking.experiment=split"))
                runs.setdefault((loss, fraction), []).append(result)
    assert compare_main(["--experiment", "split", "--tracking-uri", store, "--by", "loss", "--metric", "test/rmse",
                         "--baseline", "mse", "--columns", "data.outlier_fraction", "--out", str(tmp_path / "cmp")]) == 0
    [bars] = saved["bars.png"].axes
    heights = {(c.get_label(), round(p.get_x() + p.get_width() / 2)): p.get_height()
               for c in bars.containers if hasattr(c, "patches") for p in c.patches}
    arms = [t.get_text() for t in bars.get_xticklabels()]
    assert len(heights) == 4  # 2 arms x 2 conditions
    for (label, x), height in heights.items():
        fraction = label.split("=")[1]
        values = [r.test["rmse"] for r in runs[arms[x], fraction]]
        assert height == pytest.approx(statistics.mean(values), rel=1e-9)
    assert {label for label, _ in heights} == {"data.outlier_fraction=0.1", "data.outlier_fraction=0.3"}
    curves = saved["curves.png"].axes
    assert [ax.get_title() for ax in curves] == [f"learning curves: val/rmse at data.outlier_fraction={f}" for f in ("0.1", "0.3")]
    for ax, fraction in zip(curves, ("0.1", "0.3")):
        for line in ax.get_lines():  # each epoch's mean over that condition's two seeds
            histories = [r.history for r in runs[line.get_label(), fraction]]
            expected = [statistics.mean(h[e]["val/rmse"] for h in histories) for e in range(3)]
            assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-9)
        assert {l.get_label(): l.get_color() for l in ax.get_lines()} == {
            l.get_label(): l.get_color() for l in curves[0].get_lines()}  # an arm keeps its colour
    paired = saved["paired.png"].axes
    assert [ax.get_title().replace("\n", " ") for ax in paired] == [
        f"paired difference vs mse at data.outlier_fraction={f}; right of 0 is worse" for f in ("0.1", "0.3")]
    assert all(len(line) <= 60 for ax in paired for line in ax.get_title().splitlines())  # wrapped to a panel's width
    for ax in paired:  # the figure was drawn by savefig: its tick labels have their final places
        low, high = sorted(ax.get_xlim())
        shown = [t for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if low <= x <= high and t.get_text()]
        assert 2 <= len(shown) <= 6, [t.get_text() for t in shown]
        boxes = [t.get_window_extent() for t in shown]
        assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
    for ax, fraction in zip(paired, ("0.1", "0.3")):
        [point] = [line for line in ax.get_lines() if len(line.get_xdata()) == 1 and line.get_marker() == "o"]
        diffs = [h.test["rmse"] - m.test["rmse"] for h, m in zip(runs["huber", fraction], runs["mse", fraction])]
        assert point.get_xdata()[0] == pytest.approx(statistics.mean(diffs), rel=1e-9)
    assert [ax.get_title() for ax in saved["grad_share.png"].axes] == [
        f"where the gradient goes: {g} at data.outlier_fraction={f}" for f in ("0.1", "0.3") for g in ("clean", "outliers")]
