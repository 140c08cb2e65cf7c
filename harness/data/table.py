"""Your own tabular data from a file through pandas (``data=table``).

    python -m harness data=table data.path=houses.csv data.target=price data.task=regression
    python -m harness data=table data.path=churn.parquet data.target=churned data.task=binary loss=bce

The file (``.csv``, ``.tsv``, ``.parquet``, ``.json``, ``.jsonl``; text formats may be gzipped, ``.csv.gz``) is read
with pandas. Features are every column but the target, or ``data.features``. The rows are split train/val/test by
``data.val_fraction`` / ``data.test_fraction`` (stratified by class for classification, at least one example of
every class in every split; random for regression), deterministically from the seed. Then a scikit-learn
``ColumnTransformer`` fitted on the *training split only* standardises the numeric columns (``StandardScaler``)
and one-hot encodes the categorical ones (object, string, category and bool columns; ``OneHotEncoder`` ignoring
categories unseen in training). Classification targets may be strings or numbers: their sorted distinct values
become classes 0..C-1 (``info["classes"]``). Every problem with the file is a one-line :class:`DataError` naming
the key to fix, raised before any run is created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .. import tasks
from ..user_code import one_line
from .bundle import DataBundle, DataError, Split
from .registry import register_dataset

READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".json": "json", ".jsonl": "jsonl"}
COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")  # pandas infers these for the text formats
TABLE_TASKS = ("regression", "binary", "multiclass")
MIN_PER_CLASS = 3  # one example of each class in each of train, val and test


def show_list(items: Sequence[Any], limit: int = 20) -> str:
    """``['a', 'b', ...]`` with at most ``limit`` items, then how many more there are."""
    shown = ", ".join(repr(x) for x in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def required(cfg: DictConfig, key: str, example: str) -> Any:
    """``cfg[key]``, or a :class:`DataError` saying how to set it when it is still ``???``."""
    if key not in cfg or OmegaConf.is_missing(cfg, key) or cfg[key] in (None, ""):
        raise DataError(f"data={cfg.name} needs data.{key}, e.g. {example}")
    return cfg[key]


def resolve_path(value: Any) -> Path:
    """``value`` as an absolute path (``~`` expanded; relative paths mean the directory the command ran from)."""
    return Path(str(value)).expanduser().resolve()


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION and suffixes[-2:-1] and suffixes[-2] in (".csv", ".tsv", ".json", ".jsonl"):
        suffixes = suffixes[:-1]
    fmt = READERS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"data.path={str(path)!r}: unsupported file type {''.join(path.suffixes) or '(no extension)'}; supported: "
            f"{', '.join(READERS)} (text formats may be compressed, e.g. .csv.gz)"
        )
    return fmt


def read_table(path: Path):
    """The file at ``path`` as a pandas DataFrame (any read failure is a one-line :class:`DataError`)."""
    import pandas as pd

    if not path.exists():
        raise DataError(f"data.path: file not found: {path}")
    if not path.is_file():
        raise DataError(f"data.path: {path} is not a file")
    fmt = _format_of(path)
    try:
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise DataError(
                    f"data.path={str(path)!r}: reading .parquet needs pyarrow, which is not installed: pip install pyarrow"
                ) from None
            df = pd.read_parquet(path)
        elif fmt in ("json", "jsonl"):
            df = pd.read_json(path, lines=fmt == "jsonl")
        else:
            df = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"data.path: {path} is empty") from None
    except Exception as err:  # noqa: BLE001 - parser errors, bad encodings, broken parquet...
        raise DataError(f"data.path: cannot read {path} as {fmt} ({type(err).__name__}: {one_line(err)[:300]})") from None
    df.columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise DataError(f"data.path: {path} has no rows")
    return df


def _features(cfg: DictConfig, columns: list[str], target: str) -> list[str]:
    if target not in columns:
        raise DataError(f"data.target={target!r} is not a column of {cfg.path}; columns: {show_list(columns)}")
    chosen = cfg.get("features")
    if chosen is None:
        features = [c for c in columns if c != target]
    else:
        features = [str(chosen)] if isinstance(chosen, (str, int)) else [str(c) for c in chosen]
        unknown = [c for c in features if c not in columns]
        if unknown:
            raise DataError(f"data.features: no column {show_list(unknown)} in {cfg.path}; columns: {show_list(columns)}")
        if target in features:
            raise DataError(f"data.features includes the target column {target!r}; leave it out")
        if len(set(features)) != len(features):
            raise DataError(f"data.features names a column twice: {show_list(features)}")
    if not features:
        raise DataError(f"data.features: no feature columns left besides the target {target!r} in {cfg.path}")
    return features


def _check_finite(df, features: list[str], target: str, numeric: list[str]) -> None:
    """A :class:`DataError` naming every column with missing (or infinite) values and how many rows each."""
    bad, any_bad = [], np.zeros(len(df), dtype=bool)
    for col in [*features, target]:
        missing = df[col].isna().to_numpy()
        if col in numeric:
            missing = missing | ~np.isfinite(df[col].to_numpy(dtype=np.float64, na_value=np.nan))
        if missing.any():
            bad.append(f"{'target ' if col == target else ''}{col!r} ({int(missing.sum())} of {len(df)} rows)")
            any_bad |= missing
    if bad:
        raise DataError(
            f"data.features/data.target: missing or infinite values in {', '.join(bad)}"
            f"{f', {int(any_bad.sum())} rows in all' if len(bad) > 1 else ''}; fill or drop them in the file, or "
            f"leave those columns out with data.features"
        )


def _is_numeric(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _regression_target(series, target: str) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        raise DataError(f"data.target={target!r} holds true/false values; regression needs numbers, or set data.task=binary")
    if not _is_numeric(series):
        numbers = pd.to_numeric(series, errors="coerce")
        example = series[numbers.isna() & series.notna()]
        value = example.iloc[0] if len(example) else series.iloc[0]
        shown = repr(value.item() if hasattr(value, "item") else value)
        raise DataError(
            f"data.target={target!r} is not numeric (e.g. {shown}); regression needs numbers, or set "
            f"data.task=binary|multiclass for classes"
        )
    return series.to_numpy(dtype=np.float32)


def _sorted_classes(values: np.ndarray) -> list[Any]:
    try:
        return sorted(values.tolist())
    except TypeError:  # mixed types (a parquet/json column of numbers and strings): order by text
        return sorted(values.tolist(), key=str)


def encode_classes(series, target: str, task: str) -> tuple[np.ndarray, list[Any]]:
    """Labels 0..C-1 for the sorted distinct values of ``series``, and those values."""
    classes = _sorted_classes(series.unique())
    hint = ""
    if _is_numeric(series) and len(classes) > max(20, len(series) // 2):
        hint = f"{len(classes)} distinct values in {len(series)} rows: is it a regression target (data.task=regression)?"
    if len(classes) < 2:
        raise DataError(f"data.target={target!r} has one class only ({classes[0]!r}); {task} needs 2 or more")
    fixed = tasks.get(task).classes_in_config({})  # binary: exactly 2
    if fixed is not None and len(classes) != fixed:
        raise DataError(
            f"data.target={target!r} has {len(classes)} classes {show_list(classes, 10)} but data.task={task} needs "
            f"exactly {fixed}; {hint or 'use data.task=multiclass'}"
        )
    index = {v: i for i, v in enumerate(classes)}
    labels = series.map(index).to_numpy(dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < MIN_PER_CLASS:
        rare = int(counts.argmin())
        raise DataError(
            f"data.target={target!r}: class {classes[rare]!r} has only {int(counts[rare])} example(s); a stratified "
            f"train/val/test split needs at least {MIN_PER_CLASS} per class {hint or '(drop or merge rare classes)'}"
        )
    return labels, [v.item() if hasattr(v, "item") else v for v in classes]


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test row indices (each sorted): ``round(fraction * n)`` rows (at least 1) for val and test, the
    rest for training; with ``labels``, per class (stratified), so every class with >= 3 examples is in every
    split in about its overall proportion. Deterministic given ``seed``."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts: list[list[np.ndarray]] = [[], [], []]
    for idx in groups:
        m = len(idx)
        if m < 3:
            raise ValueError(f"a group of {m} rows cannot fill train, val and test")
        n_val, n_test = max(1, round(val_fraction * m)), max(1, round(test_fraction * m))
        while m - n_val - n_test < 1:  # fractions near 0.5 on tiny groups: keep one training example
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        perm = rng.permutation(idx)
        parts[0].append(perm[n_val + n_test :])
        parts[1].append(perm[:n_val])
        parts[2].append(perm[n_val : n_val + n_test])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def _encoder(numeric: list[str], categorical: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    steps = []
    if numeric:
        steps.append(("num", StandardScaler(), numeric))
    if categorical:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    return ColumnTransformer(steps, sparse_threshold=0.0)


def _table_limits(cfg: DictConfig) -> str | None:
    task = cfg.get("task")
    if task not in TABLE_TASKS:
        return f"data.task={task!r} is not allowed: data.task must be one of {list(TABLE_TASKS)}"
    return None


@register_dataset("table", task=None, limits=_table_limits)
def make_table(cfg: DictConfig, seed: int) -> DataBundle:
    """A CSV/TSV/Parquet/JSON file through pandas: numeric columns standardised, categorical ones one-hot encoded
    (fitted on the training split), for regression, binary or multiclass (``data.task``)."""
    task = str(cfg.get("task"))
    if task not in TABLE_TASKS:
        raise DataError(f"data.task={task!r} is not allowed for data=table: one of {', '.join(TABLE_TASKS)}")
    classification = tasks.get(task).classification
    path = resolve_path(required(cfg, "path", "data.path=houses.csv"))
    target = str(required(cfg, "target", "data.target=price (the column to predict)"))
    df = read_table(path)
    columns = list(df.columns)
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise DataError(f"data.path: {path} has duplicate column names {show_list(dup)}")
    features = _features(cfg, columns, target)
    numeric = [c for c in features if _is_numeric(df[c])]
    categorical = [c for c in features if c not in numeric]
    _check_finite(df, features, target, numeric + ([target] if _is_numeric(df[target]) else []))
    if len(df) < 3:
        raise DataError(f"data.path: {path} has {len(df)} rows; train, val and test need at least one each")

    info: dict[str, Any] = {"target": target, "columns": features, "numeric": numeric, "categorical": categorical}
    if not classification:
        y = _regression_target(df[target], target)
        num_classes = None
        train_idx, val_idx, test_idx = split_indices(len(df), cfg.val_fraction, cfg.test_fraction, seed)
        if cfg.get("standardize_target", False):
            mean, std = float(y[train_idx].mean()), float(y[train_idx].std()) or 1.0  # numpy: population sd
            y = (y - mean) / std
            info.update(target_shift=mean, target_scale=std)
    else:
        y, classes = encode_classes(df[target], target, task)
        num_classes = len(classes)
        info["classes"] = classes
        train_idx, val_idx, test_idx = split_indices(len(df), cfg.val_fraction, cfg.test_fraction, seed, labels=y)

    info["rows"] = {"train": train_idx, "val": val_idx, "test": test_idx}  # row positions in the file, per split
    x = df[features].copy()
    for c in categorical:  # one type per column for the encoder: bools, categories, mixed objects as text
        x[c] = x[c].astype(str)
    encoder = _encoder(numeric, categorical)
    try:
        x_train = encoder.fit_transform(x.iloc[train_idx])
    except ValueError as err:
        raise DataError(f"data.features: cannot encode the columns of {path} ({one_line(err)[:300]})") from None
    info["features"] = [str(n) for n in encoder.get_feature_names_out()]

    def split(x_part: np.ndarray, idx: np.ndarray) -> Split:
        label = torch.tensor(y[idx], dtype=torch.long if classification else torch.float32)
        return Split(torch.tensor(np.asarray(x_part, dtype=np.float64), dtype=torch.float32), label)

    return DataBundle(
        name="table",
        task=task,
        train=split(x_train, train_idx),
        val=split(encoder.transform(x.iloc[val_idx]), val_idx),
        test=split(encoder.transform(x.iloc[test_idx]), test_idx),
        input_shape=(int(x_train.shape[1]),),
        num_classes=num_classes,
        info=info,
        source=str(path),
    )
