"""Paired statistics (harness.stats), their table in harness.compare, and the comparison a sweep puts on its parent
run: on synthetic numbers with known differences, then on real runs (a loss that is clearly worse; two identical
arms that must come out indistinguishable)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from harness import compare, stats
from harness.callbacks import SweepParentRun
from harness.run import execute
from harness.tracking import open_experiment, start_run
from harness.train import NonFiniteLoss

# -- harness.stats on numbers with known differences ------------------------------------------------------------------


def seeds(n: int, seed: int = 0) -> np.ndarray:
    """Per-seed results that vary a lot between seeds (the shared part that pairing cancels)."""
    return 2.0 + np.random.default_rng(seed).normal(0, 0.5, n)


def test_a_clearly_worse_arm_is_distinguishable_with_a_small_p_and_every_win():
    best = seeds(8)
    worse = best + 0.3 + np.random.default_rng(1).normal(0, 0.02, 8)  # 0.3 worse on every seed; seed spread 0.5
    result = stats.paired(worse, best, lower_is_better=True)
    assert result.pairs == 8 and result.diff == pytest.approx(float(np.mean(worse - best)))
    assert 0 < result.ci_low < result.diff < result.ci_high
    assert result.distinguishable and not result.underpowered
    assert result.test == stats.EXACT and result.p == pytest.approx(2 / 2**8)  # the smallest p 8 pairs can give
    assert (result.baseline_better, result.arm_better, result.ties) == (8, 0, 0)
    # unpaired, the same numbers overlap: the seed spread (0.5) hides a 0.3 difference
    assert scipy_stats.ttest_ind(worse, best).pvalue > 0.05


def test_identical_arms_are_not_distinguishable():
    same = seeds(6)
    result = stats.paired(same, same.copy(), lower_is_better=True)
    assert result.diff == 0 and (result.ci_low, result.ci_high) == (0, 0)
    assert not result.distinguishable and result.p == 1.0 and result.test == stats.ALL_ZERO
    assert (result.ties, result.arm_better, result.baseline_better) == (6, 0, 0)


def test_the_interval_is_the_paired_t_interval():
    a, b = seeds(7, 3), seeds(7, 4)
    result = stats.paired(a, b, lower_is_better=False)
    reference = scipy_stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((reference.low, reference.high))
    assert result.p == pytest.approx(scipy_stats.wilcoxon(a - b).pvalue)


def test_direction_decides_who_won():
    base = np.array([0.80, 0.82, 0.78, 0.81, 0.79, 0.80])
    better = base + 0.05  # accuracy: higher is better
    result = stats.paired(better, base, lower_is_better=False)
    assert (result.arm_better, result.baseline_better) == (6, 0) and result.ci_low > 0
    flipped = stats.paired(better, base, lower_is_better=True)  # the same numbers as losses: the arm lost every seed
    assert (flipped.arm_better, flipped.baseline_better) == (0, 6)


def test_fewer_than_five_pairs_is_underpowered_and_one_pair_has_no_interval():
    four = stats.paired([1.0, 2.0, 3.0, 4.5], [0.0, 1.2, 2.1, 3.0], lower_is_better=True)
    assert four.underpowered and four.pairs == 4 and four.p == pytest.approx(2 / 2**4)
    one = stats.paired([1.0], [0.5], lower_is_better=True)
    assert one.underpowered and math.isnan(one.ci_low) and not one.distinguishable
    none = stats.paired([], [], lower_is_better=True)
    assert none.pairs == 0 and math.isnan(none.diff) and math.isnan(none.p)


def test_wilcoxon_says_how_it_computed_p():
    assert stats.wilcoxon([0.1, 0.2, 0.3, 0.4, 0.5])[1] == stats.EXACT
    tied, label = stats.wilcoxon([0.1, 0.1, 0.3, 0.4, 0.5, 0.6])
    assert label == stats.PERMUTATION and tied == pytest.approx(2 / 2**6)  # all positive: still the extreme
    assert stats.wilcoxon([0.0, 0.2, 0.3, 0.4, 0.5])[1] == stats.PERMUTATION
    assert stats.wilcoxon([0.1] * 20)[1] == stats.ASYMPTOTIC
    assert stats.wilcoxon([0.0, 0.0]) == (1.0, stats.ALL_ZERO)


def test_pairs_only_the_seeds_both_arms_have_and_averages_repeats():
    runs = pd.DataFrame({
        "arm": ["a", "a", "a", "b", "b", "b", "b"],
        "seed": ["0", "1", "2", "0", "1", "1", "3"],
        "value": [1.0, 2.0, 3.0, 1.5, 2.0, 3.0, 9.0],
    })
    table, repeated = stats.by_seed(runs, "arm", "seed", "value")
    assert repeated == 1 and table.loc["1", "b"] == 2.5 and math.isnan(table.loc["3", "a"])
    (result,) = stats.against(table, "a", lower_is_better=True).values()
    assert result.pairs == 2 and result.diff == pytest.approx((0.5 + 0.5) / 2)  # seeds 0 and 1 only


# -- the table in harness.compare (synthetic runs frame, no store) ----------------------------------------------------


def frame(values: dict[str, list[float]], failed: dict[str, int] | None = None) -> pd.DataFrame:
    rows = []
    for loss, results in values.items():
        for seed, value in enumerate(results):
            rows.append({"run_id": f"{loss}{seed}", "status": "FINISHED", "tags.loss": loss, "tags.seed": str(seed),
                         "metrics.test/rmse": value})
        for k in range((failed or {}).get(loss, 0)):
            rows.append({"run_id": f"{loss}-f{k}", "status": "FAILED", "tags.loss": loss, "tags.seed": str(100 + k),
                         "metrics.test/rmse": math.nan})
    return pd.DataFrame(rows)


def test_compare_marks_the_worse_arm_and_the_tie_against_the_best():
    best = list(seeds(6))
    runs = frame({"mse": [v + 0.4 for v in best], "huber": best, "huber_copy": list(best)}, failed={"mse": 1})
    table = compare.compare(runs, "test/rmse", ["loss"])
    assert list(table["arm"])[2] == "mse" and table.attrs["baseline"] in ("huber", "huber_copy")
    rows = table.set_index("arm")
    mse = rows.loc["mse"]
    assert mse["pairs"] == 6 and mse["distinguishable"] and mse["baseline_better"] == 6 and mse["failed"] == 1
    tie = rows.loc["huber_copy" if table.attrs["baseline"] == "huber" else "huber"]
    assert tie["diff"] == 0 and not tie["distinguishable"] and tie["p_value"] == 1.0
    text = compare.markdown(table, "test/rmse", ["loss"])
    base = table.attrs["baseline"]
    assert f"diff vs {base} [95% CI, t]" in text and "p (Wilcoxon)" in text and f"{base} better on" in text
    # 6 pairs, 2 comparisons: Wilcoxon's smallest p is 2/2^6 = 1/32, Holm's 1/16: the interval alone says "worse"
    assert "| worse (uncorrected) |" in text and "6 of 6 seeds" in text and "not distinguishable" in text and "(all diffs 0)" in text
    assert "t-based" in text and "Underpowered" not in text


def test_verdicts_hold_after_holm_only_where_the_adjusted_p_is_below_005():
    """10 seeds, 3 comparisons: an arm worse on every seed (Wilcoxon p 2/2^10, Holm's x 3) is *worse*; one worse on
    8 of 10, whose t interval excludes 0 but whose p (below 0.05 alone) Holm multiplies by 2 past 0.05, is *worse
    (uncorrected)*; an identical arm is not distinguishable."""
    base = list(seeds(10))
    always = [v + 0.5 for v in base]
    mostly = [v + d for v, d in zip(base, [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, -0.3, -0.45])]
    runs = frame({"base": base, "always": always, "mostly": mostly, "same": list(base)})
    table = compare.compare(runs, "test/rmse", ["loss"], baseline="base")
    rows = table.set_index("arm")
    assert rows.loc["always", "p_holm"] < 0.05 and rows.loc["mostly", "distinguishable"]
    assert rows.loc["mostly", "p_value"] < 0.05 <= rows.loc["mostly", "p_holm"]
    text = compare.markdown(table, "test/rmse", ["loss"])
    line = {r.split("|")[1].strip(): r for r in text.splitlines() if r.startswith("| ")}
    assert line["always"].rstrip().endswith("| worse |") and line["mostly"].rstrip().endswith("| worse (uncorrected) |")
    assert line["same"].rstrip().endswith("| not distinguishable |")


def test_a_diagnostic_metric_gets_higher_and_lower_not_better_and_worse():
    """``grad_share/*`` says where the gradient goes, not which loss is better: the table orders it highest first
    and calls a clear difference *higher*/*lower*; a scored metric with the same numbers is *better*/*worse*."""
    base = list(seeds(10))
    values = {"mse": [v + 0.5 for v in base], "huber": base, "same": list(base)}
    runs = frame(values).rename(columns={"metrics.test/rmse": "metrics.grad_share/outliers"})
    table = compare.compare(runs, "grad_share/outliers", ["loss"], baseline="huber")
    assert list(table["arm"])[0] == "mse" and not compare.has_direction("grad_share/outliers")
    text = compare.markdown(table, "grad_share/outliers", ["loss"])
    line = {r.split("|")[1].strip(): r for r in text.splitlines() if r.startswith("| ")}
    assert text.startswith("**grad_share/outliers** (a diagnostic: neither higher nor lower is better), highest first:")
    assert "huber higher on" in text and line["mse"].rstrip().endswith("| 0 of 10 seeds | higher |")
    assert line["huber"].rstrip().endswith("| baseline |") and line["same"].rstrip().endswith("| not distinguishable |")
    assert "better" not in line["mse"] + line["huber"] and "*higher*/*lower*" in text and "worse" not in text
    rmse = compare.compare(frame(values), "test/rmse", ["loss"], baseline="huber")
    scored = compare.markdown(rmse, "test/rmse", ["loss"])
    assert "| worse |" in scored and "huber better on" in scored
    # no baseline named: the highest arm is the reference, and it is not called best
    own = compare.markdown(compare.compare(runs, "grad_share/outliers", ["loss"]), "grad_share/outliers", ["loss"])
    line = {r.split("|")[1].strip(): r for r in own.splitlines() if r.startswith("| ")}
    assert line["mse"].rstrip().endswith("| baseline |") and "best" not in own and line["huber"].rstrip().endswith("| lower |")
    # a group named like a lower-is-better metric (rmse, loss) is still a diagnostic: highest first
    named = frame(values).rename(columns={"metrics.test/rmse": "metrics.grad_share/rmse"})
    assert not compare.lower_is_better("grad_share/rmse") and not compare.lower_is_better("grad_share/loss")
    assert list(compare.compare(named, "grad_share/rmse", ["loss"])["arm"])[0] == "mse"
    # the parent run's rank says 1 = best: a diagnostic gets means and differences but no rank
    logged = compare.parent_metrics([table, rmse])
    assert logged["arm/mse/grad_share_outliers_mean"] == pytest.approx(sum(values["mse"]) / 10)
    assert "arm/mse/grad_share_outliers_diff" in logged and not any(k.endswith("grad_share_outliers_rank") for k in logged)
    assert logged["arm/huber/test_rmse_rank"] == 1 and logged["arm/mse/test_rmse_rank"] == 3


def test_compare_with_few_seeds_says_underpowered_and_a_chosen_baseline():
    runs = frame({"mse": [2.0, 2.1, 2.3], "mae": [1.0, 1.2, 1.1], "huber": [1.1, 1.1, 1.2]})
    table = compare.compare(runs, "test/rmse", ["loss"], baseline="mse")
    text = compare.markdown(table, "test/rmse", ["loss"])
    assert table.attrs["baseline"] == "mse" and "the chosen baseline" in text
    assert "**Underpowered**: fewer than 5 paired seeds (3 pairs; every arm)" in text and "0.25 at n = 3" in text
    assert table.set_index("arm").loc["mae", "arm_better"] == 3 and "| better (uncorrected) |" in text
    with pytest.raises(SystemExit, match="no arm 'l2'"):
        compare.compare(runs, "test/rmse", ["loss"], baseline="l2")


def test_the_arms_of_a_sweep_come_from_its_overrides():
    keys = compare.swept_keys
    assert keys("loss=mse,mae seed=0,1 trainer.epochs=3 hydra.launcher.n_jobs=2,4") == ["loss"]
    assert keys("variant=mse,mae data.outlier_fraction=0.0,0.1,0.3 seed=0,1,2 trainer.progress=false") == [
        "variant", "data.outlier_fraction"]
    assert keys("seed=0,1 experiment=diabetes hydra.sweeper.params.seed='0,1' +extra=range(1,3)") == ["extra"]
    assert keys("experiment=tune_huber_delta hydra.sweeper.n_trials=3") == []
    assert keys("variant=mse,mae data.outlier_fraction=0.0,0.3 seed=0,1 data.outlier_fraction=0.3") == ["variant"]
    runs = pd.DataFrame({"run_id": ["a", "b"], "tags.variant": ["huber", "huber"], "params.loss.delta": ["1", "2"],
                         "params.seed": ["0", "1"], "params.data.name": ["outliers", "outliers"]})
    assert compare.sweep_by("experiment=tune_huber_delta", runs) == ["loss.delta"]  # what differs, seed aside
    assert compare.sweep_by("optim=adam,sgd", runs.assign(**{"params.optim.name": ["adam", "sgd"]})) == ["optim"]


def test_parent_metric_names_are_valid_mlflow_names():
    from mlflow.utils.validation import _validate_metric_name

    assert compare.metric_key("mae / 0.1") == "mae-0.1" and compare.metric_key("a=b,c") == "a_b_c"
    runs = frame({"mse": [2.0, 2.1, 2.3, 2.2, 2.4], "mae": [1.0, 1.2, 1.1, 1.3, 1.0]})
    names = compare.parent_metrics([compare.compare(runs, "test/rmse", ["loss"])])
    assert names["arm/mae/test_rmse_rank"] == 1 and names["arm/mse/test_rmse_diff"] > 0
    assert "arm/mae/test_rmse_diff" not in names  # the baseline has no difference from itself
    for name in names:
        _validate_metric_name(name)


# -- on real runs -----------------------------------------------------------------------------------------------------


def child_runs(client: MlflowClient, parent: str, experiment_id: str):
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")


def sweep_parent(store: str, overrides: str, jobs: int) -> SweepParentRun:
    """A parent run as ``SweepParentRun.on_multirun_start`` creates it, without Hydra around it."""
    client, experiment_id = open_experiment(store, "loss-harness")
    callback = SweepParentRun()
    callback.run = start_run(client, experiment_id, "sweep-test", {"sweep": "parent", "sweep.overrides": overrides})
    callback.experiment_id, callback.uri, callback.jobs = experiment_id, store, jobs
    return callback


def test_two_identical_arms_come_out_indistinguishable(make_cfg, store, capsys):
    callback = sweep_parent(store, "loss=huber loss.delta=1,1.0 seed=0,1,2 trainer.epochs=3", jobs=6)
    for delta in ("1", "1.0"):  # the same number twice: the same training, seed by seed
        for seed in range(3):
            execute(make_cfg("loss=huber", f"loss.delta={delta}", f"seed={seed}", "trainer.epochs=3"),
                    parent_run_id=callback.run.run_id)
    callback.on_multirun_end(config=None)
    out = capsys.readouterr().out
    assert "comparison (loss.delta, seeds pooled): best test/rmse: loss.delta=1" in out
    parent = callback.run.client.get_run(callback.run.run_id)
    note = parent.data.tags[compare.NOTE_TAG]
    assert "| loss.delta | test/rmse (mean ± std) | seeds | failed |" in note
    assert "+0.0000 [+0.0000, +0.0000] | 1 (all diffs 0) | 1 | 0 of 3 seeds (3 tied) | not distinguishable |" in note
    assert "**Underpowered**: fewer than 5 paired seeds (3 pairs; every arm)" in note
    assert parent.info.status == "FINISHED" and parent.data.tags["comparison.by"] == "loss.delta"
    children = child_runs(callback.run.client, callback.run.run_id, callback.experiment_id)
    assert sorted(r.data.tags["arm"] for r in children) == ["1", "1", "1", "1.0", "1.0", "1.0"]


def test_a_sweep_with_a_failed_job_still_gets_its_comparison_and_stays_failed(make_cfg, store, capsys):
    callback = sweep_parent(store, "loss=mse,huber seed=0,1 trainer.epochs=3", jobs=5)
    for loss in ("mse", "huber"):
        for seed in (0, 1):
            execute(make_cfg(f"loss={loss}", f"seed={seed}", "trainer.epochs=3"), parent_run_id=callback.run.run_id)
    with pytest.raises(NonFiniteLoss):
        execute(make_cfg("loss=mse", "seed=2", "data.outlier_scale=1e30"), parent_run_id=callback.run.run_id)
    with pytest.raises(SystemExit) as exit_:
        callback.on_multirun_end(config=None)
    assert exit_.value.code == 1
    parent = callback.run.client.get_run(callback.run.run_id)
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.failed"] == "1"
    note = parent.data.tags[compare.NOTE_TAG]
    assert "4 runs finished, 1 did not" in note and "| mse |" in note and "| 2 | 1 |" in note
    artifacts = {a.path for a in callback.run.client.list_artifacts(callback.run.run_id, "comparison")}
    assert artifacts == {f"comparison/{name}" for name in compare.FILES}


def test_a_comparison_that_cannot_be_built_does_not_change_the_sweep_status(store, monkeypatch, capsys):
    callback = sweep_parent(store, "loss=mse,huber", jobs=0)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full\nsecond line")

    monkeypatch.setattr(compare, "log_sweep", broken)
    callback.on_multirun_end(config=None)
    assert callback.run.client.get_run(callback.run.run_id).info.status == "FINISHED"
    err = capsys.readouterr().err
    assert "warning: no comparison on the parent run (RuntimeError: disk full second line)" in err


def test_a_real_sweep_puts_the_paired_comparison_on_its_parent_run(tmp_path):
    """10% one-sided outliers: mae recovers the clean line, mse does not, on every seed."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HARNESS_PARENT_RUN_ID")}
    sweep = subprocess.run(
        [sys.executable, "-m", "harness", "-m", "loss=mse,mae", "seed=0,1,2,3,4,5", "data=outliers", "trainer.epochs=3",
         "trainer.progress=false", "tracking.log_plots=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert "comparison (loss, seeds pooled): best test/rmse: loss=mae (" in sweep.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = [r for r in client.search_runs(["1"]) if r.data.tags.get("sweep") == "parent"]
    note = parent.data.tags[compare.NOTE_TAG]
    assert "| mse |" in note and "| 6 of 6 seeds | worse |" in note and "| 0.031 |" in note  # 2/2^6, exact
    assert parent.data.metrics["arm/mae/test_rmse_rank"] == 1 and parent.data.metrics["arm/mse/test_rmse_diff"] > 0.1

    out = tmp_path / "cmp"
    cli = subprocess.run(
        [sys.executable, "-m", "harness.compare", "--parent", parent.info.run_id, "--metric", "test/rmse,test/mae",
         "--out", str(out), "--log"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr[-3000:]
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["metric"]) == ["test/rmse", "test/rmse", "test/mae", "test/mae"]
    mse = table[table["loss"] == "mse"]
    assert list(mse["baseline_better"]) == [6, 6] and mse["distinguishable"].all() and (mse["ci_low"] > 0).all()
    assert list(mse["test"]) == ["exact", "exact"] and mse["p_value"].tolist() == pytest.approx([2 / 2**6] * 2)
    assert "**test/mae** (lower is better)" in cli.stdout and "logged to parent run" in cli.stdout
    logged = client.get_run(parent.info.run_id)
    assert "**test/mae**" in logged.data.tags[compare.NOTE_TAG] and "arm/mse/test_mae_mean" in logged.data.metrics
    assert all(Path(out / name).stat().st_size > 0 for name in compare.FILES)


def test_holm_adjustment_by_hand():
    # sorted finite p: 0.01, 0.03, 0.04 (m = 3) -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert stats.holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(stats.holm([0.01, 0.04, 0.03, float("nan")])[3])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
