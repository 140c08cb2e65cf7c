"""Turn an experiment's runs into a comparison table and plots.

    python -m harness.compare --experiment NAME [--tracking-uri URI] [--metric test/rmse] [--by loss,data.outlier_fraction]
                              [--parent RUN_ID] [--out DIR]

Reads the runs with ``mlflow.search_runs``; one row per combination of the ``--by`` keys (tags such as ``loss``, or
config keys such as ``data.outlier_fraction``): mean +- sample std of the metric over the finished runs (seeds),
their number, and the runs that did not finish (counted and shown, never dropped). Best first in the metric's
direction. Writes ``comparison.md``, ``comparison.csv``, ``bars.png`` (means with std error bars) and
``curves.png`` (the matching validation metric per epoch, averaged over seeds, one line per row).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
import pandas as pd

def lower_is_better(metric: str) -> bool:
    """The metric's direction, as its task declares it (``harness.tasks``)."""
    from .tasks import lower_is_better as declared

    return declared(metric)


def column(frame: pd.DataFrame, key: str) -> str:
    """The search_runs column for a ``--by`` key: a tag if one has that name, else a param."""
    for candidate in (f"tags.{key}", f"params.{key}"):
        if candidate in frame.columns:
            return candidate
    raise SystemExit(f"error: no tag or param named '{key}' in these runs")


def load_runs(experiment: str, tracking_uri: str | None, parent: str | None) -> pd.DataFrame:
    import mlflow

    from .tracking import open_store, resolve_uri

    uri = resolve_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    open_store(uri)  # never read a store while another process is still creating it
    if mlflow.get_experiment_by_name(experiment) is None:
        raise SystemExit(f"error: no experiment named '{experiment}' in {uri}")
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=50000, output_format="pandas")
    if runs.empty:
        return runs
    if "tags.sweep" in runs.columns:
        runs = runs[runs["tags.sweep"] != "parent"]
    if parent is not None:
        tag = "tags.mlflow.parentRunId"
        runs = runs[runs[tag] == parent] if tag in runs.columns else runs.iloc[0:0]
    return runs


def summarise(runs: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """One row per ``by`` combination: mean, std, n (finished runs with the metric), failed (other runs)."""
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
        })
    table = pd.DataFrame(rows)
    return table.sort_values("mean", ascending=lower_is_better(metric), na_position="last").reset_index(drop=True)


def markdown(table: pd.DataFrame, metric: str, by: list[str]) -> str:
    header = "| " + " | ".join(by) + f" | {metric} (mean ± std) | seeds | failed |"
    lines = [header, "|" + "---|" * (len(by) + 3)]
    for _, row in table.iterrows():
        value = "n/a" if math.isnan(row["mean"]) else f"{row['mean']:.4f} ± {0.0 if math.isnan(row['std']) else row['std']:.4f}"
        lines.append("| " + " | ".join(str(row[k]) for k in by) + f" | {value} | {row['n']} | {row['failed']} |")
    return "\n".join(lines)


def plot(table: pd.DataFrame, metric: str, by: list[str], tracking_uri: str | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow.tracking import MlflowClient

    from .tracking import resolve_uri

    labels = [" / ".join(str(row[k]) for k in by) for _, row in table.iterrows()]
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * len(table) + 2), 4))
    ax.bar(range(len(table)), table["mean"], yerr=table["std"].fillna(0), capsize=3, color="tab:blue", alpha=0.8)
    ax.set_xticks(range(len(table)), labels, rotation=45, ha="right")
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    ax.set_title(f"{metric}, {'lower' if lower_is_better(metric) else 'higher'} is better")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "bars.png", dpi=110)
    plt.close(fig)

    curve = "val/" + metric.split("/", 1)[-1]
    client = MlflowClient(tracking_uri=resolve_uri(tracking_uri))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    drawn = 0
    for label, (_, row) in zip(labels, table.iterrows()):
        histories = [[m.value for m in sorted(client.get_metric_history(r, curve), key=lambda m: m.step)] for r in row["run_ids"]]
        histories = [h for h in histories if h]
        if not histories:
            continue
        length = min(len(h) for h in histories)
        mean = [sum(h[i] for h in histories) / len(histories) for i in range(length)]
        ax.plot(range(1, length + 1), mean, label=label)
        drawn += 1
    ax.set(xlabel="epoch", ylabel=f"{curve} (mean over seeds)", title=f"learning curves: {curve}")
    if drawn:
        ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db")
    parser.add_argument("--metric", default=None, help="default: the task's headline test metric")
    parser.add_argument("--by", default="loss", help="comma-separated tags or config keys (default: loss)")
    parser.add_argument("--columns", default=None, help="also write a pivot: one column per value of this key")
    parser.add_argument("--parent", default=None, help="only the runs of this sweep (parent run id)")
    parser.add_argument("--out", default=None, help="output folder (default: comparison/<experiment>)")
    args = parser.parse_args(argv)

    runs = load_runs(args.experiment, args.tracking_uri, args.parent)
    if runs.empty:
        print(f"no runs in experiment '{args.experiment}'", file=sys.stderr)
        return 1
    metric = args.metric or default_metric(runs)
    by = [k.strip() for k in args.by.split(",") if k.strip()]
    table = summarise(runs, metric, by)
    out = Path(args.out or Path("comparison") / args.experiment)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(table, metric, by)
    (out / "comparison.md").write_text(text + "\n")
    table.drop(columns=["run_ids"]).to_csv(out / "comparison.csv", index=False)
    plot(table, metric, by, args.tracking_uri, out)
    print(text)
    if args.columns:
        pivot_text = pivot(runs, metric, by, args.columns)
        (out / "pivot.md").write_text(pivot_text + "\n")
        print("\n" + pivot_text)
    failed = int(table["failed"].sum())
    print(f"\n{len(runs)} runs ({failed} not finished); best first ({'lower' if lower_is_better(metric) else 'higher'} is better). "
          f"Wrote {out}/comparison.md, comparison.csv, bars.png, curves.png")
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
