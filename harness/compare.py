"""Turn an experiment's runs into a comparison table, paired statistics and plots.

    python -m harness.compare --experiment NAME [--tracking-uri URI] [--metric test/rmse[,test/mae]] [--by loss,...]
                              [--baseline ARM] [--columns KEY] [--select KEY [--select-on val/...]]
                              [--parent RUN_ID [--log]] [--out DIR]

Reads the runs with ``MlflowClient.search_runs``; one row per *arm*, a combination of the ``--by`` keys (tags such as
``loss`` or ``variant``, or config keys such as ``data.outlier_fraction``; with ``--parent`` and no ``--by``: the keys
that sweep swept, seed excepted): mean +- sample std of the metric over the finished runs (seeds), their number, and
the runs that did not finish (counted and shown, never dropped). Best first in the metric's direction (highest first
for a diagnostic such as ``grad_share/*``, which has none). Then, paired by seed, every arm against the best one (or
``--baseline``): the mean difference with a t-based 95% confidence interval, a Wilcoxon signed-rank p-value and on how
many seeds the baseline was better (``harness.stats``). Writes
``comparison.md``, ``comparison.csv``, ``bars.png`` (means with std error bars), ``curves.png`` (the matching
validation metric per epoch, averaged over seeds, one line per row) and ``paired.png`` (each arm's paired difference
from the baseline with its interval), one section or panel per metric. With ``--columns KEY`` (the study's condition)
the figures are drawn per condition, never pooled over it: a bar per arm and condition, and a row of curves and of
paired differences per condition; ``pivot.md`` and ``conditions.png`` (the metric against the condition) too.

``--select optim.lr`` tunes a setting per arm, as a practitioner would: each arm (and each condition of ``--columns``)
keeps the runs of the value with the best mean validation metric (``--select-on``, default the task's monitored one),
and the tables compare those; ``selected.md`` lists the choice and every candidate's validation mean.

``--parent RUN_ID --log`` also puts the comparison on that sweep's parent run (as a sweep does when it ends): the
tables as the run's description (the markdown the MLflow UI shows on the run page), the files as artifacts under
``comparison/``, per-arm metrics ``arm/<arm>/<metric>_mean|_std|_rank|_diff``, and an ``arm`` tag on every child run.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from . import stats

ARM_SEP = " / "
FILES = ("comparison.md", "comparison.csv", "bars.png", "curves.png", "paired.png")
NOTE_TAG = "mlflow.note.content"  # the run description that the MLflow UI renders as markdown
MAX_NOTE = 7900  # MLflow keeps tag values up to 8000 characters


def lower_is_better(metric: str) -> bool:
    """The metric's direction, as its task declares it (``harness.tasks``)."""
    from .tasks import lower_is_better as declared

    return declared(metric)


def has_direction(metric: str) -> bool:
    """Whether the metric scores the arms (``test/accuracy``) or only describes them (``grad_share/*``)."""
    from .tasks import has_direction as declared

    return declared(metric)


def direction(metric: str) -> str:
    """How to read the metric: which way is better, or that no way is (a diagnostic)."""
    if not has_direction(metric):
        return "a diagnostic: neither higher nor lower is better"
    return f"{'lower' if lower_is_better(metric) else 'higher'} is better"


def find_column(frame: pd.DataFrame, key: str) -> str | None:
    """The runs-frame column for a ``--by`` key: a tag of that name, else a param, else the param ``<key>.name``
    (a config group such as ``optim``), else ``None``."""
    for candidate in (f"tags.{key}", f"params.{key}", f"params.{key}.name"):
        if candidate in frame.columns:
            return candidate
    return None


def column(frame: pd.DataFrame, key: str) -> str:
    """The runs-frame column for a ``--by`` key; exits with an error naming the key if there is none."""
    found = find_column(frame, key)
    if found is None:
        raise SystemExit(f"error: no tag or param named '{key}' in these runs")
    return found


def arm_of(values: Iterable[Any]) -> str:
    """An arm's label: its ``--by`` values joined with `` / `` (``huber``, ``mae / 0.1``)."""
    return ARM_SEP.join(str(v) for v in values)


def arm_labels(runs: pd.DataFrame, by: list[str]) -> pd.Series:
    """Each run's arm label."""
    keys = [column(runs, k) for k in by]
    if runs.empty:
        return pd.Series([], index=runs.index, dtype=object)
    return runs[keys].apply(lambda row: arm_of(row.tolist()), axis=1)


def runs_frame(runs: Iterable[Any]) -> pd.DataFrame:
    """MLflow runs as a frame with the columns of ``mlflow.search_runs``: run_id, status, tags.*, params.*, metrics.*."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run_id": run.info.run_id, "status": run.info.status}
        row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
        row.update({f"params.{k}": v for k, v in run.data.params.items()})
        row.update({f"metrics.{k}": float(v) for k, v in run.data.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "status"])


def search(client: Any, experiment_id: str, parent: str | None) -> pd.DataFrame:
    """The runs of an experiment (or of one sweep: the children of run ``parent``), sweep parents left out."""
    query = f"tags.`mlflow.parentRunId` = '{parent}'" if parent else ""
    runs = runs_frame(client.search_runs([experiment_id], filter_string=query, max_results=50000))
    if "tags.sweep" in runs.columns:
        runs = runs[runs["tags.sweep"] != "parent"]
    return runs.reset_index(drop=True)


def load_runs(experiment: str, tracking_uri: str | None, parent: str | None) -> pd.DataFrame:
    from .tracking import open_store, resolve_uri

    uri = resolve_uri(tracking_uri)
    client = open_store(uri)  # never read a store while another process is still creating it
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"error: no experiment named '{experiment}' in {uri}")
    return search(client, found.experiment_id, parent)


def where(runs: pd.DataFrame, conditions: str | None) -> pd.DataFrame:
    """The runs whose tag or param ``KEY`` equals ``VALUE`` (or one of ``V1|V2|...``) for every ``KEY=VALUE`` of the
    comma-separated ``conditions`` (values compared as text, then as numbers: ``0.30`` matches ``0.3``)."""
    for item in _keys(conditions):
        key, sep, values = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --where takes KEY=VALUE, got '{item}'")
        col = column(runs, key.strip())
        text = runs[col].astype(str)
        numbers = pd.to_numeric(runs[col], errors="coerce")
        keep = pd.Series(False, index=runs.index)
        for value in (v.strip() for v in values.split("|")):
            match = text == value
            with contextlib.suppress(ValueError):
                match |= numbers == float(value)
            if not match.any():
                raise SystemExit(f"error: no run has {key.strip()}={value}; values: {sorted(text.unique())}")
            keep |= match
        runs = runs[keep]
    return runs.reset_index(drop=True)


def select(runs: pd.DataFrame, key: str, on: str, within: list[str]) -> tuple[pd.DataFrame, str]:
    """Tune ``key`` per arm on validation: within each combination of the ``within`` keys (the arm, and the condition
    when there is one), keep only the runs of the ``key`` value whose finished runs have the best mean ``on`` (a
    validation metric, e.g. ``val/rmse`` at the last epoch), values with a failed run ranked after those without.
    Returns the kept runs and a markdown table of the chosen values (with each candidate's mean ``on``)."""
    col, on_col = column(runs, key), f"metrics.{on}"
    if on_col not in runs.columns or not has_direction(on):
        valid = sorted(c[len("metrics."):] for c in runs.columns
                       if c.startswith("metrics.val/") and has_direction(c[len("metrics."):]))
        why = "no such metric in these runs" if on_col not in runs.columns else "a diagnostic scores no value above another"
        raise SystemExit(f"error: --select-on {on}: {why}; choose one of {valid}")
    lower = lower_is_better(on)
    keys = [column(runs, k) for k in within]
    kept, lines = [], []
    for values, group in runs.groupby(keys, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        scores = []
        for value, candidates in group.groupby(col, dropna=False):
            done = candidates[(candidates["status"] == "FINISHED") & candidates[on_col].notna()][on_col]
            mean = done.mean() if len(done) else math.nan
            failed = len(candidates) - len(done)
            scores.append((failed > 0, math.isnan(mean), mean if lower else -mean, value, mean, failed))
        best = min(scores, key=lambda s: s[:3])
        kept.append(group[group[col].isna()] if pd.isna(best[3]) else group[group[col] == best[3]])
        tried = ", ".join(f"{v}: {_num(m)}" + (f" ({f} failed)" if f else "") for *_, v, m, f in sorted(scores, key=lambda s: _order(s[3])))
        lines.append(f"| {' | '.join(map(str, values))} | {best[3]} | {tried} |")
    header = f"| {' | '.join(within)} | {key} chosen | mean {on} per {key} |\n|" + "---|" * (len(within) + 2)
    return pd.concat(kept).reset_index(drop=True), header + "\n" + "\n".join(lines)


def _order(value: Any) -> tuple:
    """Sort key: numbers by value (``0.003 < 0.01 < 0.1``), then text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def runs_of_metric(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The runs of the tasks that log ``metric`` (``test/rmse``: regression runs), failed ones included; runs of
    other tasks sharing the experiment are not part of its table."""
    from . import tasks

    name = metric.rpartition("/")[2]
    owners = [t for t in tasks.available() if name in tasks.get(t).metrics]
    if not owners or "tags.task" not in runs.columns:
        return runs
    return runs[runs["tags.task"].isna() | runs["tags.task"].isin(owners)]


def summarise(runs: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """One row per ``by`` combination of the runs of ``metric``'s task: mean, std, n (finished runs with the metric),
    failed (the other runs)."""
    runs = runs_of_metric(runs, metric)
    keys = [column(runs, k) for k in by]
    metric_col = f"metrics.{metric}"
    if metric_col not in runs.columns:
        raise SystemExit(f"error: no metric '{metric}' in these runs")
    rows = []
    for values, group in runs.groupby(keys, dropna=False, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        done = group[(group["status"] == "FINISHED") & group[metric_col].notna()][metric_col]
        rows.append({
            **dict(zip(by, values)),
            "mean": done.mean() if len(done) else math.nan,
            "std": done.std(ddof=1) if len(done) > 1 else math.nan,
            "n": len(done),
            "failed": len(group) - len(done),
            "run_ids": list(group["run_id"]),
            "arm": arm_of(values),
        })
    table = pd.DataFrame(rows)
    return table.sort_values("mean", ascending=lower_is_better(metric), na_position="last").reset_index(drop=True)


def _squash(label: str) -> str:
    return "".join(str(label).split())


def resolve_baseline(table: pd.DataFrame, baseline: str | None) -> str | None:
    """The baseline arm's label: ``baseline`` (spaces ignored: ``mae/0.1`` is ``mae / 0.1``), else the best arm."""
    if baseline is None:
        measured = table[table["n"] > 0]
        return None if measured.empty else str(measured.iloc[0]["arm"])
    for arm in table["arm"]:
        if _squash(arm) == _squash(baseline):
            return str(arm)
    raise SystemExit(f"error: no arm '{baseline}' to use as --baseline; the arms: {', '.join(map(str, table['arm']))}")


PAIRED_COLUMNS = ["metric", "baseline", "pairs", "diff", "ci_low", "ci_high", "p_value", "test",
                  "arm_better", "baseline_better", "ties", "distinguishable", "underpowered", "p_holm"]


def compare(runs: pd.DataFrame, metric: str, by: list[str], baseline: str | None = None) -> pd.DataFrame:
    """:func:`summarise`, plus every arm against the baseline (the best arm unless named), paired by seed
    (:mod:`harness.stats`): the columns of :data:`PAIRED_COLUMNS`, empty on the baseline's row."""
    table = summarise(runs, metric, by)
    lower = lower_is_better(metric)
    base = resolve_baseline(table, baseline)
    table["metric"], table["baseline"] = metric, base
    for name in PAIRED_COLUMNS[2:]:
        table[name] = None
    table.attrs.update(metric=metric, baseline=base, duplicates=0, paired=False)
    seed = find_column(runs, "seed")
    if base is None or seed is None:
        return table
    metric_col = f"metrics.{metric}"
    done = runs[(runs["status"] == "FINISHED") & runs[metric_col].notna()]
    frame = pd.DataFrame({"arm": arm_labels(done, by), "seed": done[seed], "value": done[metric_col]})
    matrix, duplicates = stats.by_seed(frame, "arm", "seed", "value")
    results = stats.against(matrix, base, lower) if base in matrix.columns else {}
    for i, arm in enumerate(table["arm"]):
        result = results.get(arm)
        if arm == base:
            continue
        if result is None:  # no finished run of this arm, or of the baseline
            result = stats.paired([], [], lower)
        table.loc[i, PAIRED_COLUMNS[2:]] = [
            result.pairs, result.diff, result.ci_low, result.ci_high, result.p, result.test,
            result.arm_better, result.baseline_better, result.ties, result.distinguishable, result.underpowered, None,
        ]
    others = table["arm"] != base
    table.loc[others, "p_holm"] = stats.holm(table.loc[others, "p_value"].tolist())
    table.attrs.update(duplicates=duplicates, pooled=pooled_keys(done, frame["arm"], seed) if duplicates else [], paired=True)
    return table


def pooled_keys(runs: pd.DataFrame, arms: pd.Series, seed: str) -> list[str]:
    """The config keys (``params.*``) whose value differs between runs of one arm and seed: the settings that
    pairing by seed averages over."""
    params = [c for c in runs.columns if c.startswith("params.")]
    if not params:
        return []
    groups = runs[params].astype(object).fillna("<unset>").groupby([arms.to_numpy(), runs[seed].to_numpy()])
    varying = groups.nunique().gt(1).any()
    return [c[len("params."):] for c in params if varying[c]]


def _num(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "") + _num(value)


P_MARK = {stats.EXACT: "", stats.PERMUTATION: " (perm.)", stats.ASYMPTOTIC: " (approx.)", stats.ALL_ZERO: " (all diffs 0)"}


def _paired_cells(row: pd.Series, base: str, lower: bool, best: str, scored: bool) -> list[str]:
    if row["arm"] == base:
        return ["(baseline)", "", "", "", "best" if base == best and scored else "baseline"]
    pairs = int(row["pairs"])
    if pairs == 0:
        return ["no paired seeds", "", "", "", "n/a"]
    if pairs == 1:
        diff = f"{_signed(row['diff'])} (1 pair: no interval)"
    else:
        diff = f"{_signed(row['diff'])} [{_signed(row['ci_low'])}, {_signed(row['ci_high'])}]"
    p = f"{row['p_value']:.2g}{P_MARK.get(row['test'], '')}"
    p_holm = "" if row["p_holm"] is None or math.isnan(row["p_holm"]) else f"{row['p_holm']:.2g}"
    wins = f"{int(row['baseline_better'])} of {pairs} seeds" + (f" ({int(row['ties'])} tied)" if row["ties"] else "")
    if row["distinguishable"]:
        if scored:
            verdict = "worse" if (row["diff"] > 0) == lower else "better"
        else:
            verdict = "higher" if row["diff"] > 0 else "lower"
        if not row["p_holm"] < 0.05:  # NaN too
            verdict += " (uncorrected)"
    else:
        verdict = "not distinguishable" if pairs > 1 else "n/a"
    return [diff, p, p_holm, wins, verdict]


def legend(table: pd.DataFrame, metric: str) -> list[str]:
    """The paragraphs under a paired table: what the columns mean, and when not to trust them."""
    base, lower, scored = table.attrs["baseline"], lower_is_better(metric), has_direction(metric)
    best = str(table.iloc[0]["arm"])
    others = table[(table["arm"] != base) & table["pairs"].notna()]
    if others.empty:
        return []
    role = "the chosen baseline" if base != best else "the best arm" if scored else "the highest arm"
    reading = (f"{'lower' if lower else 'higher'} is better, so a {'positive' if lower else 'negative'} diff is worse "
               f"than {base}" if scored else "a diagnostic: a difference says how the arms differ, not which is better")
    verdicts = "*better*/*worse*" if scored else "*higher*/*lower*"
    lines = [
        f"Paired by seed against **{base}** ({role}): diff = arm − {base} in {metric}, averaged over the seeds on "
        f"which both finished ({reading}); 95% CI: t-based (Student's t "
        f"over the per-seed differences); p: two-sided Wilcoxon signed-rank test (SciPy), exact unless marked "
        f"(perm.: ties or zero differences, exact permutation test; approx.: normal approximation); p (Holm): "
        f"Wilcoxon's p adjusted for the {int(pd.to_numeric(others['p_value'], errors='coerce').notna().sum())} "
        f"comparisons against {base} (Holm 1979; below 0.05, a difference "
        f"holds at a 5% family-wise error rate); {verdicts}: the interval excludes 0 and Holm's p is below "
        f"0.05; *(uncorrected)*: the interval excludes 0 but Holm's p is not below 0.05, so the difference does not "
        f"survive the correction at this number of seeds; *not distinguishable*: the interval includes 0."
    ]
    weak = others[others["underpowered"].astype(bool) & (others["pairs"] > 0)]
    if len(weak):
        counts = sorted({int(n) for n in weak["pairs"]})
        n = max(counts[0], 1)
        who = "every arm" if len(weak) == len(others) else ", ".join(map(str, weak["arm"]))
        lines.append(
            f"**Underpowered**: fewer than {stats.MIN_PAIRS} paired seeds ({'/'.join(map(str, counts))} "
            f"pair{'' if counts == [1] else 's'}; "
            f"{who}). With n pairs Wilcoxon's p cannot fall below 2/2^n ({2 / 2 ** n:.3g} at n = {n}) and the t interval "
            f"is wide: run more seeds before trusting a difference, or a tie."
        )
    elif 0 < int(others["pairs"].min()) <= stats.MIN_PAIRS:
        n = int(others["pairs"].min())
        lines.append(f"With {n} pairs Wilcoxon's p cannot fall below 2/2^{n} = {2 / 2 ** n:.3g}: a difference seen on "
                     f"every seed is as clear as {n} seeds can make it; the interval says how large it is.")
    if table.attrs.get("duplicates"):
        pooled = table.attrs.get("pooled") or []
        shown = ", ".join(pooled[:4]) + (f" and {len(pooled) - 4} more" if len(pooled) > 4 else "")
        lines.append(f"{table.attrs['duplicates']} (arm, seed) pairs had several finished runs; their values were "
                     f"averaged before pairing" + (f". Those runs differ in {shown}: the paired columns pool these "
                     f"settings; for paired statistics per setting, keep one value with `--where KEY=VALUE` or add "
                     f"the key to `--by`." if pooled else " (runs of one config)."))
    return lines


def markdown(table: pd.DataFrame, metric: str, by: list[str]) -> str:
    lower, scored = lower_is_better(metric), has_direction(metric)
    paired = bool(table.attrs.get("paired"))
    base = table.attrs.get("baseline")
    heads = [*by, f"{metric} (mean ± std)", "seeds", "failed"]
    if paired:
        heads += [f"diff vs {base} [95% CI, t]", "p (Wilcoxon)", "p (Holm)",
                  f"{base} {'better' if scored else 'higher'} on", "verdict"]
    lines = [f"**{metric}** ({direction(metric)}), {'best' if scored else 'highest'} first:", "",
             "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    best = str(table.iloc[0]["arm"]) if len(table) else ""
    for _, row in table.iterrows():
        value = "n/a" if math.isnan(row["mean"]) else f"{row['mean']:.4f} ± {0.0 if math.isnan(row['std']) else row['std']:.4f}"
        cells = [str(row[k]) for k in by] + [value, str(row["n"]), str(row["failed"])]
        if paired:
            cells += _paired_cells(row, base, lower, best, scored)
        lines.append("| " + " | ".join(cells) + " |")
    if paired:
        for paragraph in legend(table, metric):
            lines += ["", paragraph]
    return "\n".join(lines)


def mean_history(client: Any, run_ids: Iterable[str], key: str) -> list[float]:
    """``key``'s per-epoch values averaged over the runs that logged it, up to the shortest of them; [] if none did."""
    runs = [h for h in ([m.value for m in sorted(client.get_metric_history(r, key), key=lambda m: m.step)]
                        for r in run_ids) if h]
    if not runs:
        return []
    length = min(len(h) for h in runs)
    return [sum(h[i] for h in runs) / len(runs) for i in range(length)]


Split = list[tuple[str, list[pd.DataFrame]]]  # per condition: its label (``key=value``) and its tables, metric by metric


def by_condition(runs: pd.DataFrame, metrics: list[str], by: list[str], key: str, baseline: str | None) -> Split:
    """Per value of the condition ``key`` (numbers in order), :func:`compare`'s tables of the runs at that value alone;
    a ``baseline`` with no run at a value gives way there to that condition's best arm."""
    col = column(runs, key)
    split = []
    for value in sorted(runs[col].dropna().unique(), key=_order):
        at = runs[runs[col] == value]
        names = set(arm_labels(at, by).map(_squash))
        base = baseline if baseline is None or _squash(baseline) in names else None
        split.append((f"{key}={value}", [compare(at, m, by, base) for m in metrics]))
    return split


def _at(label: str) -> str:
    return f" at {label}" if label else ""


def plot(tables: list[pd.DataFrame], by: list[str], tracking_uri: str | None, out: Path, split: Split | None = None) -> None:
    """``bars.png``, ``curves.png`` and ``paired.png`` (each arm's paired difference from the baseline with its
    interval): one panel per metric (the tables of :func:`compare`). With ``split`` (:func:`by_condition`), a bar per
    arm and condition, and a row of panels per condition; an arm keeps one colour in every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from mlflow.tracking import MlflowClient

    from .tracking import resolve_uri

    client = MlflowClient(tracking_uri=resolve_uri(tracking_uri))
    rows = split or [("", tables)]
    colour = {str(arm): k for k, arm in enumerate(tables[0]["arm"])}
    count = len(tables)
    width = max(5, 0.55 * max(len(t) for t in tables) * (1 + 0.35 * (len(rows) - 1)) + 2)
    fig, axes = plt.subplots(1, count, figsize=(width * count, 4), squeeze=False)
    for i, (ax, table) in enumerate(zip(axes[0], tables)):
        metric, arms = table.attrs["metric"], list(table["arm"])
        step = 0.8 / len(rows)
        for j, (label, tabs) in enumerate(rows):
            cell = tabs[i].set_index("arm").reindex(arms)
            ax.bar([x - 0.4 + step * (j + 0.5) for x in range(len(arms))], cell["mean"], step,
                   yerr=cell["std"].astype(float).fillna(0), capsize=2, alpha=0.8,
                   color="tab:blue" if not split else f"C{j % 10}", label=label or None)
        ax.set_xticks(range(len(arms)), arms, rotation=45, ha="right")
        ax.set_ylabel(f"{metric} (mean ± std over seeds)")
        ax.set_title(f"{metric}, {direction(metric)}")
        if split:
            ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=110)
    plt.close(fig)

    first: dict[str, int] = {}  # validation curve -> its first metric's table: test/pr_auc and best/pr_auc share one
    for i, table in enumerate(tables):
        first.setdefault("val/" + table.attrs["metric"].split("/", 1)[-1], i)
    lines = {(label, curve): [(str(arm), mean_history(client, ids, curve))
                              for arm, ids in zip(tabs[i]["arm"], tabs[i]["run_ids"])]
             for label, tabs in rows for curve, i in first.items()}
    drawn = [c for c in first if any(h for label, _ in rows for _, h in lines[label, c])]  # test-only metrics: none
    curves = drawn or list(first)[:1]
    fig, axes = plt.subplots(len(rows), len(curves), figsize=(6.5 * len(curves), 4.2 * len(rows)), squeeze=False)
    for ax_row, (label, _) in zip(axes, rows):
        for ax, curve in zip(ax_row, curves):
            arms = [(arm, mean) for arm, mean in lines[label, curve] if mean] if drawn else []
            for arm, mean in arms:
                ax.plot(range(1, len(mean) + 1), mean, label=arm, **line_style(colour.get(arm, 0)))
            ax.set(xlabel="epoch", ylabel=f"{curve} (mean over seeds)",
                   title=f"learning curves: {curve}{_at(label)}" if arms else f"no per-epoch {curve} logged")
            if arms:
                ax.legend(fontsize=7, ncol=2)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)

    height = max(2.5, 0.45 * max(len(t) for t in tables) + 1.5)
    fig, axes = plt.subplots(len(rows), count, figsize=(6.5 * count, height * len(rows)), squeeze=False)
    for ax, table, label in [(ax, table, label) for ax_row, (label, tabs) in zip(axes, rows)
                             for ax, table in zip(ax_row, tabs)]:
        metric, base = table.attrs["metric"], table.attrs.get("baseline")
        lower = lower_is_better(metric)
        shown = table[(table["arm"] != base) & (table["pairs"].fillna(0).astype(int) > 0)] if base else table.iloc[0:0]
        for y, (_, row) in enumerate(shown.iterrows()):
            low, high = row["ci_low"], row["ci_high"]
            color = "tab:gray"
            if row["distinguishable"]:
                color = ("tab:blue" if not has_direction(metric)
                         else "tab:red" if (row["diff"] > 0) == lower else "tab:green")
            err = None if pd.isna(low) else [[row["diff"] - low], [high - row["diff"]]]
            ax.errorbar([row["diff"]], [y], xerr=err, fmt="o", color=color, capsize=4)
        ax.axvline(0, color="black", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))  # more labels of 4 decimals overlap
        ax.set_yticks(range(len(shown)), list(shown["arm"]))
        ax.invert_yaxis()
        ax.set_xlabel(f"{metric}: arm − {base}\n(mean over paired seeds, 95% CI t-based)", fontsize=9)
        worse = (f"{'right' if lower else 'left'} of 0 is worse" if has_direction(metric)
                 else "a diagnostic: no side is worse")
        ax.set_title(textwrap.fill(f"paired difference vs {base}{_at(label)}; {worse}", 60), fontsize=10)  # a panel's width
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "paired.png", dpi=110)
    plt.close(fig)
    plot_grad_share([(label, tabs[0]) for label, tabs in rows], colour, client, out)


def line_style(k: int) -> dict[str, str]:
    """The k-th arm's colour and dash: ten colours, then the same colours dashed, then dotted."""
    return {"color": f"C{k % 10}", "linestyle": ("-", "--", ":")[(k // 10) % 3]}


def plot_grad_share(rows: list[tuple[str, pd.DataFrame]], colour: dict[str, int], client: Any, out: Path) -> None:
    """``grad_share.png`` when the runs logged ``trainer.grad_share``: per group (and per condition, a row each), its
    share of the loss gradient per epoch, one line per arm (mean over seeds) in its ``colour``, the group's share of
    the data dashed (:mod:`harness.grad_share`)."""
    import matplotlib.pyplot as plt

    from .grad_share import PREFIX

    first = client.get_run(rows[0][1].iloc[0]["run_ids"][0])
    groups = sorted(k[len(PREFIX):] for k in first.data.metrics if k.startswith(PREFIX))
    if not groups:
        return
    fig, axes = plt.subplots(len(rows), len(groups), figsize=(6 * len(groups), 4.2 * len(rows)), squeeze=False)
    for ax_row, (label, table) in zip(axes, rows):
        for ax, group in zip(ax_row, groups):
            for arm, ids in zip(table["arm"], table["run_ids"]):
                mean = mean_history(client, ids, PREFIX + group)
                if mean:
                    ax.plot(range(1, len(mean) + 1), mean, label=str(arm), **line_style(colour.get(str(arm), 0)))
            fractions = {client.get_run(r).data.params.get(f"grad_share.{group}_fraction")
                         for ids in table["run_ids"] for r in ids}
            if len(fractions) == 1 and None not in fractions:  # one condition: the group's share of the data, dashed
                fraction = float(fractions.pop())
                ax.axhline(fraction, color="black", linestyle="--", linewidth=1, label=f"share of the data ({fraction:.0%})")
            ax.set(xlabel="epoch", ylabel=f"share of |dL/d output| on {group} (mean over seeds)", ylim=(0, 1),
                   title=f"where the gradient goes: {group}{_at(label)}")
            ax.legend(fontsize=7, ncol=2)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "grad_share.png", dpi=110)
    plt.close(fig)


def plot_conditions(runs: pd.DataFrame, metrics: list[str], by: list[str], key: str, out: Path) -> Path:
    """``conditions.png``: each metric against the study's condition ``key`` (outlier fraction, prevalence, noise
    level, foreground share) on the x axis, one line per arm (``by``) through its means over seeds, every seed as a
    dot, and the mean's 95% t-interval as an error bar. Returns the file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.4), squeeze=False)
    colour: dict[str, int] = {}  # an arm keeps its colour in every panel, though each panel lists the arms best first
    for ax, metric in zip(axes[0], metrics):
        frame = runs_of_metric(runs, metric)
        frame = frame[(frame["status"] == "FINISHED") & frame[f"metrics.{metric}"].notna()]
        x_col = column(frame, key)
        if pd.to_numeric(frame[x_col], errors="coerce").notna().all():  # numbers: placed at their values
            conditions = sorted(frame[x_col].unique(), key=float)
            position = {v: float(v) for v in conditions}
        else:
            conditions = sorted(frame[x_col].unique(), key=str)
            position = {v: float(i) for i, v in enumerate(conditions)}
        span = (max(position.values()) - min(position.values())) or 1.0
        arms = arm_labels(frame, by)
        order = summarise(frame, metric, by)["arm"].tolist()
        for arm in order:
            k = colour.setdefault(arm, len(colour))
            rows = frame[arms == arm]
            offset = (k - (len(order) - 1) / 2) * 0.012 * span  # arms side by side at each condition
            xs, means = [], []
            for v in conditions:
                values = rows[rows[x_col] == v][f"metrics.{metric}"].astype(float).tolist()
                if not values:
                    continue
                x = position[v] + offset
                mean = sum(values) / len(values)
                low, high = stats.t_interval(values)
                ax.errorbar([x], [mean], yerr=None if math.isnan(low) else [[mean - low], [high - mean]],
                                   fmt="none", capsize=3, color=f"C{k % 10}", alpha=0.8)
                ax.scatter([x] * len(values), values, s=9, color=f"C{k % 10}", alpha=0.45, linewidths=0)
                xs.append(x)
                means.append(mean)
            ax.plot(xs, means, marker="o", markersize=4, label=arm, **line_style(k))
        ax.set_xticks([position[v] for v in conditions], [str(v) for v in conditions])
        ax.set(xlabel=key, ylabel=metric, title=f"{metric} against {key} ({direction(metric)})\n"
               "mean over seeds, 95% t-interval, seeds as dots")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "conditions.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def written(out: Path) -> list[Path]:
    """The files :func:`write` wrote under ``out`` (``grad_share.png`` only when the runs logged it)."""
    return [out / n for n in FILES] + ([out / "grad_share.png"] if (out / "grad_share.png").is_file() else [])


def write(tables: list[pd.DataFrame], by: list[str], tracking_uri: str | None, out: Path, split: Split | None = None) -> str:
    """Write comparison.md, comparison.csv, bars.png, curves.png and paired.png (per condition with ``split``) under
    ``out``; return the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(markdown(t, t.attrs["metric"], by) for t in tables)
    (out / "comparison.md").write_text(text + "\n")
    pd.concat([t.drop(columns=["run_ids", "arm"]) for t in tables]).to_csv(out / "comparison.csv", index=False)
    plot(tables, by, tracking_uri, out, split)
    return text


# -- the sweep's parent run -------------------------------------------------------------------------------------------


def swept_keys(overrides: str) -> list[str]:
    """The keys a sweep sweeps (``loss=mse,mae``, ``range(..)``, ``interval(..)``...) in its overrides as the parent
    run records them (tag ``sweep.overrides``: an experiment's ``hydra.sweeper.params``, then the command line), in
    order; a key's last override decides; ``seed`` and ``hydra.*`` left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    swept: dict[str, bool] = {}  # key -> swept by its last override (the command line's wins over the config's)
    for token in overrides.split():
        try:
            override = parser.parse_override(token)
        except Exception:  # noqa: BLE001 - a piece of a quoted value with spaces: not a key of its own
            continue
        key = override.key_or_group
        if key != "seed" and not key.startswith("hydra"):
            swept[key] = override.is_sweep_override()
    return [key for key, is_swept in swept.items() if is_swept]


def sweep_by(overrides: str, runs: pd.DataFrame) -> list[str]:
    """The arms of a sweep: its swept keys that the runs carry (as tags or params); for a sweeper whose search space
    is not in the overrides (Optuna), the params that differ between the runs; else ``variant``."""
    keys = [k for k in swept_keys(overrides) if find_column(runs, k) is not None]
    if keys:
        return keys
    varying = [c[len("params."):] for c in runs.columns
               if c.startswith("params.") and c != "params.seed" and runs[c].nunique(dropna=False) > 1]
    return varying or ["variant" if "tags.variant" in runs.columns else "loss"]


def metric_key(text: str) -> str:
    """``text`` as one segment of an MLflow metric name (letters, digits, ``_ - . space``)."""
    key = re.sub(r"[^\w.\- ]", "_", text.replace(ARM_SEP, "-")).strip()
    return key if key.strip(".") else "_"


def parent_metrics(tables: list[pd.DataFrame]) -> dict[str, float]:
    """Per arm and metric: ``arm/<arm>/<metric>_mean``, ``_std``, ``_rank`` (1 = best; none for a diagnostic, which
    ranks nothing) and ``_diff`` (vs the baseline), for sorting and charts in the UI."""
    values: dict[str, float] = {}
    for table in tables:
        name = metric_key(table.attrs["metric"].replace("/", "_"))
        for rank, (_, row) in enumerate(table.iterrows(), start=1):
            prefix = f"arm/{metric_key(str(row['arm']))}/{name}"
            for suffix, value in (("mean", row["mean"]), ("std", row["std"]), ("diff", row["diff"])):
                if value is not None and not pd.isna(value):
                    values[f"{prefix}_{suffix}"] = float(value)
            if row["n"] and has_direction(table.attrs["metric"]):
                values[f"{prefix}_rank"] = float(rank)
    return values


def description(tables: list[pd.DataFrame], by: list[str], runs: pd.DataFrame, parent: str, missing: int,
                error: str | None = None) -> str:
    """The parent run's description: what was compared, the tables, where the files are."""
    finished = int((runs["status"] == "FINISHED").sum()) if len(runs) else 0
    arms = arm_labels(runs, by).nunique() if len(runs) else 0
    head = [f"### Comparison of this sweep's {len(runs)} runs",
            f"Arms: {' × '.join(f'`{k}`' for k in by)} ({arms}); seeds pooled. {finished} runs finished, "
            f"{len(runs) - finished} did not" + (f", {missing} job(s) created no run" if missing else "") + "."]
    tail = [f"Files: artifacts `comparison/` ({', '.join(FILES)}). "
            f"Recompute: `python -m harness.compare --parent {parent} --log`."]
    if error:
        return "\n\n".join([*head, error, *tail])
    sections = [markdown(t, t.attrs["metric"], by) for t in tables]
    text = "\n\n".join([*head, *sections, *tail])
    while len(text) > MAX_NOTE and len(sections) > 1:
        sections.pop()
        text = "\n\n".join([*head, *sections, "(more metrics in comparison/comparison.md)", *tail])
    if len(text) > MAX_NOTE:
        cut = text[: MAX_NOTE - 200].rsplit("\n", 1)[0]
        text = cut + "\n\n(table cut here to fit the description: the whole table is comparison/comparison.md)"
    return text


def log_to_parent(client: Any, parent: str, tables: list[pd.DataFrame], by: list[str], runs: pd.DataFrame,
                  files: list[Path], missing: int = 0) -> None:
    """Put the comparison on the sweep's parent run and tag each child run with its arm."""
    from mlflow.entities import Metric, RunTag

    from .tracking import signals_held

    tags = {NOTE_TAG: description(tables, by, runs, parent, missing), "comparison.by": ",".join(by)}
    for table in tables:
        if table.attrs.get("baseline") is not None and has_direction(table.attrs["metric"]):
            tags[f"comparison.best.{table.attrs['metric']}"] = str(table.iloc[0]["arm"])
    now = int(pd.Timestamp.now().timestamp() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in parent_metrics(tables).items()]
    arms = list(zip(runs["run_id"], arm_labels(runs, by))) if len(runs) else []
    with signals_held():  # an interrupt inside a SQLite write would leave its lock held (harness.tracking)
        for path in files:
            client.log_artifact(parent, str(path), "comparison")
        client.log_batch(parent, tags=[RunTag(k, v) for k, v in tags.items()])
        for i in range(0, len(metrics), 1000):
            client.log_batch(parent, metrics=metrics[i : i + 1000])
        for run_id, arm in arms:
            client.set_tag(run_id, "arm", arm)


def log_sweep(client: Any, parent: str, tracking_uri: str, missing: int = 0) -> str:
    """Compare the runs of sweep ``parent`` on the arms it swept and log the comparison to the parent run (what a
    sweep does when it ends). Returns a one-line summary."""
    run = client.get_run(parent)
    runs = search(client, run.info.experiment_id, parent)
    by = sweep_by(run.data.tags.get("sweep.overrides", ""), runs) if len(runs) else ["loss"]
    metric = default_metric(runs) if len(runs) else None
    if metric is None or f"metrics.{metric}" not in runs.columns:
        note = description([], by, runs, parent, missing, error=f"No run of this sweep finished with {metric or 'a metric'}.")
        client.set_tag(parent, NOTE_TAG, note)
        return "comparison: no finished run to compare"
    tables = [compare(runs, metric, by)]
    with tempfile.TemporaryDirectory(prefix="harness-compare-") as tmp:
        out = Path(tmp)
        write(tables, by, tracking_uri, out)
        files = written(out)
        log_to_parent(client, parent, tables, by, runs, files, missing)
    best = tables[0].iloc[0]
    spread = "" if math.isnan(best["std"]) else f" ± {best['std']:.4f}"
    arm = ", ".join(f"{k}={best[k]}" for k in by)
    return (f"comparison ({' × '.join(by)}, seeds pooled): best {metric}: {arm} ({best['mean']:.4f}{spread}, "
            f"{best['n']} seeds); the table is the parent run's description, files under its artifacts comparison/")


# -- command line -----------------------------------------------------------------------------------------------------


def _keys(text: str | None) -> list[str]:
    return [k.strip() for k in (text or "").split(",") if k.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=None, help="the experiment (required unless --parent names a sweep)")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    parser.add_argument("--metric", default=None,
                        help="one metric or several, comma-separated (default: the task's headline test metric)")
    parser.add_argument("--by", default=None,
                        help="comma-separated tags or config keys (default: loss; with --parent: the keys the sweep swept)")
    parser.add_argument("--baseline", default=None,
                        help="compare every arm with this one, named as in the table (e.g. mse, 'mae / 0.1'); default: the best")
    parser.add_argument("--columns", default=None,
                        help="the study's condition: also write a pivot (one column per value of this key) and "
                             "conditions.png (each metric against it, one line per arm)")
    parser.add_argument("--parent", default=None, help="only the runs of this sweep (parent run id)")
    parser.add_argument("--where", default=None,
                        help="only the runs whose tags or params have these values, e.g. data.outlier_fraction=0.3 "
                             "(comma-separated KEY=VALUE; \"KEY=A|B\", quoted for the shell, keeps either): paired "
                             "statistics within one condition, or a subset of the arms")
    parser.add_argument("--select", default=None,
                        help="a config key to tune per arm on validation (e.g. optim.lr): each arm (and condition of "
                             "--columns) keeps only the runs of its best value of --select-on; writes selected.md")
    parser.add_argument("--select-on", default=None,
                        help="the validation metric that --select chooses by (default: the task's, e.g. val/rmse)")
    parser.add_argument("--log", action="store_true",
                        help="with --parent: put the comparison on the parent run (description, artifacts, metrics)")
    parser.add_argument("--out", default=None, help="output folder (default: comparison/<experiment>)")
    args = parser.parse_args(argv)
    if args.experiment is None and args.parent is None:
        parser.error("name the runs: --experiment NAME, or --parent RUN_ID for one sweep")
    if args.log and args.parent is None:
        parser.error("--log puts the comparison on a sweep's parent run: name it with --parent RUN_ID")

    from .tracking import open_store, resolve_uri

    uri = resolve_uri(args.tracking_uri)
    client = open_store(uri)  # never read a store while another process is still creating it
    parent_run = None
    if args.parent is not None:
        try:
            parent_run = client.get_run(args.parent)
        except Exception:  # noqa: BLE001 - MlflowException: no such run
            raise SystemExit(f"error: no run with id '{args.parent}' in {uri}") from None
    if args.experiment is not None:
        found = client.get_experiment_by_name(args.experiment)
        if found is None:
            raise SystemExit(f"error: no experiment named '{args.experiment}' in {uri}")
        if parent_run is not None and parent_run.info.experiment_id != found.experiment_id:
            raise SystemExit(f"error: run {args.parent} is not in experiment '{args.experiment}'")
        experiment_id, experiment = found.experiment_id, args.experiment
    else:
        experiment_id = parent_run.info.experiment_id
        experiment = client.get_experiment(experiment_id).name

    runs = where(search(client, experiment_id, args.parent), args.where)
    if runs.empty:
        print(f"no runs in {'sweep ' + args.parent if args.parent else 'experiment'} '{experiment}'", file=sys.stderr)
        return 1
    if args.by:
        by = _keys(args.by)
    elif parent_run is not None:
        by = sweep_by(parent_run.data.tags.get("sweep.overrides", ""), runs)
    else:
        by = ["loss"]
    metrics = _keys(args.metric) or [default_metric(runs)]
    out = Path(args.out or Path("comparison") / experiment)
    chosen = None
    if args.select:
        on = args.select_on or "val/" + default_metric(runs).split("/", 1)[1]
        by = [k for k in by if k != args.select]  # a sweep's keys include the one to choose
        runs, chosen = select(runs, args.select, on, by + ([args.columns] if args.columns else []))
    tables = [compare(runs, metric, by, args.baseline) for metric in metrics]
    split = by_condition(runs, metrics, by, args.columns, args.baseline) if args.columns else None
    text = write(tables, by, uri, out, split)
    print(text)
    files = written(out)
    if chosen is not None:
        (out / "selected.md").write_text(chosen + "\n")
        files.append(out / "selected.md")
        print(f"\n{args.select} chosen per arm on validation:\n\n{chosen}")
    if args.columns:
        pivots = [pivot(runs, m, by, args.columns) for m in metrics]
        pivot_text = "\n\n".join(p if len(metrics) == 1 else f"**{m}**\n\n{p}" for m, p in zip(metrics, pivots))
        (out / "pivot.md").write_text(pivot_text + "\n")
        files += [out / "pivot.md", plot_conditions(runs, metrics, by, args.columns, out)]
        print("\n" + pivot_text)
    failed = int(runs["status"].ne("FINISHED").sum())
    directions = ", ".join(f"{m}: {direction(m)}" for m in metrics)
    directions = directions.split(": ", 1)[1] if len(metrics) == 1 else directions
    scored = [has_direction(m) for m in metrics]
    first = ("best first" if all(scored) else "highest first" if not any(scored)
             else "best first, diagnostics highest first")
    print(f"\n{len(runs)} runs ({failed} not finished); {first} ({directions}). "
          f"Wrote {out}/{', '.join(f.name for f in files)}")
    if args.log:
        log_to_parent(client, args.parent, tables, by, runs, files)
        print(f"logged to parent run {args.parent}: description, artifacts comparison/, metrics arm/..., child tags 'arm'")
    return 0


def pivot(runs: pd.DataFrame, metric: str, by: list[str], key: str) -> str:
    """Markdown table: rows = ``by`` combinations, one column per value of ``key``, cells mean ± std (n)."""
    table = summarise(runs, metric, [*by, key])
    values = sorted(table[key].unique(), key=lambda v: float(v) if str(v).replace(".", "", 1).isdigit() else str(v))
    order = table.groupby(by, sort=False)["mean"].mean().sort_values(ascending=lower_is_better(metric)).index
    lines = ["| " + " | ".join(by) + " | " + " | ".join(f"{key}={v}" for v in values) + " |", "|" + "---|" * (len(by) + len(values))]
    for row_key in order:
        row_key = row_key if isinstance(row_key, tuple) else (row_key,)
        cells = []
        for v in values:
            match = table[(table[key] == v) & (table[by].apply(tuple, axis=1) == row_key)]
            if match.empty or math.isnan(match.iloc[0]["mean"]):
                cells.append("n/a")
            else:
                r = match.iloc[0]
                std = 0.0 if math.isnan(r["std"]) else r["std"]
                cells.append(f"{r['mean']:.3f} ± {std:.3f}" + (f" ({r['failed']} failed)" if r["failed"] else ""))
        lines.append("| " + " | ".join(map(str, row_key)) + " | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def default_metric(runs: pd.DataFrame) -> str:
    from . import tasks

    if "tags.task" not in runs.columns or not runs["tags.task"].notna().any():
        raise SystemExit("error: these runs have no 'task' tag; name the metric with --metric")
    return f"test/{tasks.get(runs['tags.task'].dropna().iloc[0]).monitor}"


if __name__ == "__main__":
    sys.exit(main())
