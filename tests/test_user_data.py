"""A user's own data through the real loaders: tables through pandas and scikit-learn (``data=table``), class
folders through torchvision's ImageFolder (``data=image_folder``), image/mask folder pairs (``data=mask_folder``).
Real files are written into the test's temporary directory; CLI runs happen there too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.criterion import build_criterion
from harness.data import DataError, build_data
from harness.run import execute, main_job

NOISE = 0.5  # sd of the noise in the regression table
CITY_EFFECT = {"north": 2.0, "south": -1.0, "west": 0.0}


def start_cli(cwd: Path, *overrides: str) -> subprocess.Popen:
    """``python -m harness`` in ``cwd`` with its own store ``cwd/m.db``, output into ``cwd/stdout``/``cwd/stderr``."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [sys.executable, "-m", "harness", *overrides, f"tracking.uri=sqlite:///{cwd / 'm.db'}", "trainer.progress=false",
            "tracking.log_plots=false", "trainer.threads=1"]
    with open(cwd / "stdout", "w") as out, open(cwd / "stderr", "w") as err:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err, text=True)


def metric_of(proc: subprocess.CompletedProcess, name: str) -> float:
    match = re.search(rf"test/{name}\s+([-0-9.naninf]+)", proc.stdout)
    assert match, proc.stdout
    return float(match.group(1))


def runs_in(db: Path) -> int:
    """Runs in the SQLite store ``db`` (0 when it does not exist)."""
    if not db.exists():
        return 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return len(client.search_runs(ids)) if ids else 0


def own_lines(stderr: str) -> list[str]:
    """stderr without MLflow's and alembic's log lines (printed when a store is first created)."""
    return [line for line in stderr.splitlines() if line.strip() and not re.search(r"INFO\s+(mlflow|\[alembic)", line)]


# --- files ------------------------------------------------------------------------------------------------------


def regression_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """y = 1.5 x1 - 0.7 x2 + city effect + N(0, NOISE^2), x1 ~ N(5, 2^2), x2 ~ U(0, 10)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(5, 2, n), "x2": rng.uniform(0, 10, n), "city": rng.choice(list(CITY_EFFECT), n)})
    df["y"] = 1.5 * df.x1 - 0.7 * df.x2 + df.city.map(CITY_EFFECT) + rng.normal(0, NOISE, n)
    return df


@pytest.fixture
def regression_csv(tmp_path) -> Path:
    path = tmp_path / "houses.csv"
    regression_frame().to_csv(path, index=False)
    return path


def write_pngs(root: Path, per_class: int = 12, size: int = 16) -> dict[str, int]:
    """``root/<class>/<i>.png``: noisy RGB squares whose brightness says the class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    levels = {"bright": 210, "dark": 40, "mid": 125}
    for name, level in levels.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return levels


def write_pairs(folder: Path, n: int = 20, size: int = 40, classes: int = 2) -> None:
    """``folder/images/s<i>.jpg`` (a bright square on a dark noisy background) and ``folder/masks/s<i>.png`` (the
    square's pixels = 1; with ``classes=3`` a second, dimmer square = 2)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, mask = rng.normal(50, 12, (size, size, 3)), np.zeros((size, size), np.uint8)
        for label in range(1, classes):
            side = int(rng.integers(size // 4, size * 2 // 5 + 1))
            y, x = rng.integers(1, size - side, 2)
            image[y : y + side, x : x + side] += 160 / label
            mask[y : y + side, x : x + side] = label
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "images" / f"s{i}.jpg", quality=95)
        Image.fromarray(mask).save(folder / "masks" / f"s{i}.png")


# --- the CLI runs, started together -----------------------------------------------------------------------------


def _table_run(cwd: Path) -> list[str]:
    regression_frame().to_csv(cwd / "houses.csv", index=False)
    return ["data=table", "data.path=houses.csv", "data.target=y", "data.task=regression", "trainer.epochs=30"]


def _bad_table_run(cwd: Path) -> list[str]:
    regression_frame(n=30).to_csv(cwd / "houses.csv", index=False)
    return ["data=table", "data.path=houses.csv", "data.target=cost"]


def _image_folder_run(cwd: Path) -> list[str]:
    write_pngs(cwd / "shades")
    return ["data=image_folder", "data.root=shades", "trainer.epochs=3", "trainer.batch_size=4"]


def _mask_folder_run(cwd: Path) -> list[str]:
    write_pairs(cwd / "pairs")
    return ["data=mask_folder", "data.images=pairs/images", "data.masks=pairs/masks", "trainer.epochs=5",
            "trainer.batch_size=4"]


CLI_RUNS = {  # test -> writes its files into the working directory, returns the overrides
    "test_table_regression_cli_run_reaches_the_noise_level": _table_run,
    "test_bad_input_through_the_real_cli": _bad_table_run,
    "test_image_folder_cli_run_beats_chance": _image_folder_run,
    "test_mask_folder_cli_run": _mask_folder_run,
}


@pytest.fixture(scope="module", autouse=True)
def cli(request, tmp_path_factory):
    """The CLI runs of this file's selected tests, all started before its first test: each is mostly interpreter
    and import start-up, so side by side (and beside the in-process tests) they cost far less than in turn."""
    selected = {item.name for item in request.session.items if item.module is request.module}
    started = {}
    for name, prepare in CLI_RUNS.items():
        if name in selected:
            cwd = tmp_path_factory.mktemp(name.removeprefix("test_")[:30])
            started[name] = (cwd, start_cli(cwd, *prepare(cwd)))
    yield started
    for _, proc in started.values():  # only a failing test leaves one running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finished(cli, request) -> tuple[Path, subprocess.CompletedProcess]:
    """The working directory and the completed CLI run of the test asking."""
    cwd, proc = cli[request.node.name]
    proc.wait(timeout=300)
    out, err = (cwd / "stdout").read_text(), (cwd / "stderr").read_text()
    return cwd, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- data=table -------------------------------------------------------------------------------------------------


def test_table_regression_bundle(make_cfg, regression_csv):
    df = regression_frame()
    cfg = make_cfg("data=table", f"data.path={regression_csv}", "data.target=y")
    data = build_data(cfg.data, seed=0)
    assert data.task == "regression" and data.num_classes is None and data.source == str(regression_csv.resolve())
    assert data.input_shape == (2 + 3,)  # x1, x2 scaled; city one-hot over its 3 values
    assert (len(data.train), len(data.val), len(data.test)) == (280, 60, 60)
    assert data.info["features"] == ["num__x1", "num__x2", "cat__city_north", "cat__city_south", "cat__city_west"]
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.float32
    # the scaler saw the training rows only: train columns have mean 0 / std 1, the others exactly train's scaling
    assert data.train.x[:, :2].double().mean(0).abs().max() < 1e-6
    assert torch.allclose(data.train.x[:, :2].double().std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-5)
    rows = data.info["rows"]
    train = df.iloc[rows["train"]]
    for name in ("val", "test"):
        split, part = getattr(data, name), df.iloc[rows[name]]
        assert (split.x[:, :2].double().mean(0).abs() > 1e-3).all()  # not re-fitted on val/test
        for j, col in enumerate(("x1", "x2")):
            expected = (part[col] - train[col].mean()) / train[col].std(ddof=0)
            assert np.allclose(split.x[:, j].numpy(), expected.to_numpy(), atol=1e-5)
        onehot = split.x[:, 2:]
        assert set(onehot.unique().tolist()) <= {0.0, 1.0} and torch.equal(onehot.sum(1), torch.ones(len(split)))
        assert np.array_equal(onehot.argmax(1).numpy(), part.city.map({"north": 0, "south": 1, "west": 2}).to_numpy())
        # targets standardised with the training targets' mean and sd (data.standardize_target, the default)
        expected_y = (part.y - train.y.mean()) / train.y.std(ddof=0)
        assert np.allclose(split.y.numpy(), expected_y.to_numpy(dtype=np.float32), atol=1e-5)
    assert data.info["target_shift"] == pytest.approx(train.y.mean()) and data.info["target_scale"] == pytest.approx(train.y.std(ddof=0))
    raw = build_data(make_cfg("data=table", f"data.path={regression_csv}", "data.target=y", "data.standardize_target=false").data, seed=0)
    assert np.allclose(raw.test.y.numpy(), df.iloc[rows["test"]].y.to_numpy(dtype=np.float32))
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(400))  # a partition of the rows
    again, other = build_data(cfg.data, seed=0), build_data(cfg.data, seed=1)
    assert again.digest() == data.digest()
    assert other.digest() != data.digest() and not np.array_equal(other.info["rows"]["test"], rows["test"])


def test_table_binary_string_labels_stratified_with_balanced_weights(make_cfg, tmp_path):
    rng = np.random.default_rng(2)
    n = 200
    x = rng.normal(size=n)
    answer = np.where(np.arange(n) % 10 < 3, "yes", "no")  # 30% "yes", exactly
    rng.shuffle(answer)
    df = pd.DataFrame({"x": x + (answer == "yes"), "plan": rng.choice(["basic", "pro"], n), "churned": answer})
    path = tmp_path / "churn.csv"
    df.to_csv(path, index=False)
    cfg = make_cfg("data=table", f"data.path={path}", "data.target=churned", "data.task=binary", "loss=bce",
                   "data.class_weights=balanced", "trainer.epochs=5")
    data = build_data(cfg.data, seed=0)
    assert data.task == "binary" and data.num_classes == 2 and data.info["classes"] == ["no", "yes"]
    assert data.input_shape == (3,) and data.train.y.dtype == torch.long
    for split, size in ((data.train, 140), (data.val, 30), (data.test, 30)):
        assert len(split) == size and split.y.sum().item() == round(0.3 * size)  # "yes" in every split, 30%
    for name in ("train", "val", "test"):
        labels = df.churned.iloc[data.info["rows"][name]].map({"no": 0, "yes": 1}).to_numpy()
        assert np.array_equal(getattr(data, name).y.numpy(), labels)
    criterion = build_criterion(cfg, "binary", 2, data.class_counts())
    assert criterion.weights == pytest.approx([140 / (2 * 98), 140 / (2 * 42)])
    result = execute(cfg)  # the whole run in-process, weights and all
    # positives are shifted by one sd in x: the population ROC-AUC is Phi(1/sqrt(2)) = 0.76; chance is 0.5
    assert result.status == "FINISHED" and result.test["roc_auc"] > 0.6


def test_table_multiclass_numeric_labels_and_feature_subset(make_cfg, tmp_path):
    rng = np.random.default_rng(3)
    n = 90
    grade = np.repeat([2, 5, 9], n // 3)
    df = pd.DataFrame({"a": rng.normal(size=n) + grade, "b": rng.normal(size=n), "shop": rng.choice(["x", "y", "z", "w"], n),
                       "id": np.arange(n), "grade": grade})
    path = tmp_path / "grades.tsv"
    df.to_csv(path, sep="\t", index=False)
    cfg = make_cfg("data=table", f"data.path={path}", "data.target=grade", "data.task=multiclass", "data.features=[a,shop]")
    data = build_data(cfg.data, seed=0)
    assert data.num_classes == 3 and data.info["classes"] == [2, 5, 9]
    assert data.input_shape == (1 + 4,) and data.info["columns"] == ["a", "shop"]
    for split in (data.train, data.val, data.test):
        assert torch.bincount(split.y, minlength=3).tolist() == [len(split) // 3] * 3  # 30 per class: stratified
    y = torch.cat([data.train.y, data.val.y, data.test.y])
    assert set(y.tolist()) == {0, 1, 2}


def test_table_parquet_and_json_read_the_same_table(make_cfg, tmp_path):
    df = regression_frame(n=60)
    df.to_parquet(tmp_path / "t.parquet")
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    df.to_csv(tmp_path / "t.csv.gz", index=False)
    built = [build_data(make_cfg("data=table", f"data.path={tmp_path / f}", "data.target=y").data, seed=0)
             for f in ("t.parquet", "t.jsonl", "t.csv.gz")]
    assert built[0].input_shape == (5,) and len(built[0].test) == 9
    for other in built[1:]:
        assert torch.allclose(other.train.x, built[0].train.x, atol=1e-5) and torch.allclose(other.test.y, built[0].test.y)


def test_parquet_without_pyarrow_says_how_to_get_it(make_cfg, tmp_path, monkeypatch):
    regression_frame(n=30).to_parquet(tmp_path / "t.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(DataError, match=r"data.path=.*pip install pyarrow"):
        build_data(make_cfg("data=table", f"data.path={tmp_path / 't.parquet'}", "data.target=y").data, seed=0)


def test_sklearn_bundled_diabetes_as_csv_runs(make_cfg, tmp_path):
    from sklearn.datasets import load_diabetes

    path = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True).frame.to_csv(path, index=False)
    cfg = make_cfg("data=table", f"data.path={path}", "data.target=target", "trainer.epochs=30", "optim.lr=0.03")
    result = execute(cfg)
    assert result.status == "FINISHED"
    assert result.test["rmse"] < 65.0  # the target's sd is 77 (least squares on all 442 rows: 53)


# --- bad input: one line naming the key, exit 2, no run -----------------------------------------------------------


def _bad_table(tmp: Path) -> Path:
    df = pd.DataFrame({
        "x": np.arange(12.0), "kind": ["a", "b", "c"] * 4, "price": ["1,200", "950"] * 6, "same": ["k"] * 12,
        "rare": ["p"] * 10 + ["q"] * 2, "three": ["u", "v", "w"] * 4, "gap": [1.0] * 11 + [np.nan],
        "y": np.linspace(0, 1, 12),
    })
    df.loc[[3, 7], "x"] = np.nan
    path = tmp / "bad.csv"
    df.to_csv(path, index=False)
    df.drop(columns=["x", "gap"]).to_csv(tmp / "clean.csv", index=False)
    (tmp / "sheet.xlsx").write_bytes(b"PK")
    return path


BAD_INPUTS = {
    # id: (overrides with {tmp} for the folder, what the one error line must contain)
    "missing_file": (["data.path={tmp}/nowhere.csv", "data.target=y"], ["data.path", "file not found", "{tmp}/nowhere.csv"]),
    "no_path": (["data.target=y"], ["data.path", "needs"]),
    "extension": (["data.path={tmp}/sheet.xlsx", "data.target=y"], ["data.path", ".xlsx", ".csv", ".parquet"]),
    "no_target_column": (["data.path={tmp}/clean.csv", "data.target=cost"], ["data.target='cost'", "columns: ['kind'"]),
    "no_feature_column": (["data.path={tmp}/clean.csv", "data.target=y", "data.features=[kind,size,age]"],
                          ["data.features", "['size', 'age']", "columns:"]),
    "text_target": (["data.path={tmp}/clean.csv", "data.target=price"], ["data.target='price'", "not numeric", "'1,200'"]),
    "one_class": (["data.path={tmp}/clean.csv", "data.target=same", "data.task=binary", "loss=bce"],
                  ["data.target='same'", "one class", "'k'"]),
    "rare_class": (["data.path={tmp}/clean.csv", "data.target=rare", "data.task=binary", "loss=bce"],
                   ["data.target='rare'", "class 'q' has only 2"]),
    "binary_of_three": (["data.path={tmp}/clean.csv", "data.target=three", "data.task=binary", "loss=bce"],
                        ["data.target='three'", "3 classes", "data.task=multiclass"]),
    "nan": (["data.path={tmp}/bad.csv", "data.target=y", "data.features=[x,kind,gap]"],
            ["data.features", "'x' (2 of 12 rows)", "'gap' (1 of 12 rows)", "3 rows in all"]),
    "image_root_missing": (["data=image_folder", "data.root={tmp}/nowhere"], ["data.root", "folder not found", "{tmp}/nowhere"]),
    "empty_class_folder": (["data=image_folder", "data.root={tmp}/imgs"], ["data.root", "['empty']", "no images"]),
    "no_class_folders": (["data=image_folder", "data.root={tmp}/loose"], ["data.root", "no class folders", "2 images"]),
    "image_without_mask": (["data=mask_folder", "data.images={tmp}/seg/images", "data.masks={tmp}/seg/masks",
                            "data.num_classes=2"], ["data.masks", "no mask for 2 of 6 images", "s0.jpg, s3.jpg"]),
    "mask_value_too_big": (["data=mask_folder", "data.images={tmp}/seg3/images", "data.masks={tmp}/seg3/masks",
                            "data.num_classes=2"], ["data.num_classes=2", "holds class 2"]),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> Path:
    from PIL import Image

    tmp = tmp_path_factory.mktemp("bad")
    _bad_table(tmp)
    write_pngs(tmp / "imgs", per_class=3, size=8)
    (tmp / "imgs" / "empty").mkdir()
    (tmp / "loose").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp / "loose" / f"{i}.png")
    write_pairs(tmp / "seg", n=6, size=16)
    for i in (0, 3):
        (tmp / "seg" / "masks" / f"s{i}.png").unlink()
    write_pairs(tmp / "seg3", n=4, size=24, classes=3)
    return tmp


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_exit_2_before_any_run(case, bad_files, make_cfg, capsys):
    """What the CLI does (``main_job`` is its task function), in-process to keep this file fast; one store for all
    the cases (creating one takes a second), which must never hold a run."""
    overrides, expected = BAD_INPUTS[case]
    tmp = str(bad_files)
    if not any(o.startswith("data=") for o in overrides):
        overrides = ["data=table", *overrides]
    cfg = make_cfg(*[o.replace("{tmp}", tmp) for o in overrides], "trainer.epochs=1")
    cfg.tracking.uri = f"sqlite:///{bad_files / 'mlflow.db'}"
    with pytest.raises(SystemExit) as exit_:
        main_job(cfg)
    assert exit_.value.code == 2
    lines = own_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in expected:
        assert text.replace("{tmp}", tmp) in lines[0], lines[0]
    assert runs_in(bad_files / "mlflow.db") == 0


# --- data=image_folder ------------------------------------------------------------------------------------------


@pytest.fixture
def image_root(tmp_path) -> Path:
    root = tmp_path / "shades"
    write_pngs(root)
    (root / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes
    (root / "dark" / ".thumb.png").write_bytes(b"not an image")  # nor are hidden files images
    return root


def test_image_folder_bundle(make_cfg, image_root):
    data = build_data(make_cfg("data=image_folder", f"data.root={image_root}").data, seed=0)
    assert data.task == "multiclass" and data.num_classes == 3 and data.info["classes"] == ["bright", "dark", "mid"]
    assert data.input_shape == (3, 32, 32) and data.train.x.shape == (24, 3, 32, 32)
    for split, per_class in ((data.train, 8), (data.val, 2), (data.test, 2)):  # 12 per class, stratified
        assert torch.bincount(split.y, minlength=3).tolist() == [per_class] * 3
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.long
    assert data.train.x.double().mean((0, 2, 3)).abs().max() < 1e-5  # normalised with training statistics
    brightness = {c: data.train.x[data.train.y == c].mean().item() for c in range(3)}
    assert brightness[1] < brightness[2] < brightness[0]  # dark < mid < bright: labels follow folder names
    grey = build_data(make_cfg("data=image_folder", f"data.root={image_root}", "data.channels=1", "data.image_size=16").data, seed=0)
    assert grey.input_shape == (1, 16, 16) and grey.train.x.shape[1:] == (1, 16, 16)
    assert build_data(make_cfg("data=image_folder", f"data.root={image_root}").data, seed=1).digest() != data.digest()


# --- data=mask_folder -------------------------------------------------------------------------------------------


def test_mask_folder_bundle(make_cfg, tmp_path):
    write_pairs(tmp_path / "pairs")
    cfg = make_cfg("data=mask_folder", f"data.images={tmp_path / 'pairs/images'}", f"data.masks={tmp_path / 'pairs/masks'}")
    data = build_data(cfg.data, seed=0)
    assert data.task == "segmentation" and data.num_classes == 2  # read from the masks
    assert data.input_shape == (3, 32, 32) and (len(data.train), len(data.val), len(data.test)) == (14, 3, 3)
    assert data.train.y.shape == (14, 32, 32) and data.train.y.dtype == torch.long
    assert set(torch.cat([data.train.y, data.val.y, data.test.y]).unique().tolist()) == {0, 1}  # nearest: no blends
    for split in (data.train, data.val, data.test):  # each mask sits on its own image's bright square
        for x, y in zip(split.x, split.y):
            brightness = x.mean(0)
            assert brightness[y == 1].mean() > brightness[y == 0].mean() + 1.0
    assert data.train.x.double().mean((0, 2, 3)).abs().max() < 1e-5
    write_pairs(tmp_path / "three", n=6, classes=3)
    three = build_data(make_cfg("data=mask_folder", f"data.images={tmp_path / 'three/images'}",
                                f"data.masks={tmp_path / 'three/masks'}").data, seed=0)
    assert three.num_classes == 3
    from PIL import Image

    for f in (tmp_path / "three" / "masks").iterdir():  # black/white masks: a common slip, refused with the fix
        Image.fromarray((np.asarray(Image.open(f)) > 0).astype(np.uint8) * 255).save(f)
    with pytest.raises(DataError, match="hold 0 and 255"):
        build_data(make_cfg("data=mask_folder", f"data.images={tmp_path / 'three/images'}",
                            f"data.masks={tmp_path / 'three/masks'}").data, seed=0)


# --- the CLI runs, end to end (started by the `cli` fixture before the first test; checked last) ---------------


def test_table_regression_cli_run_reaches_the_noise_level(cli, request):
    cwd, proc = finished(cli, request)  # data=table data.path=houses.csv data.target=y data.task=regression, 30 epochs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert metric_of(proc, "rmse") < 1.5 * NOISE
    assert runs_in(cwd / "m.db") == 1


def test_bad_input_through_the_real_cli(cli, request):
    cwd, proc = finished(cli, request)  # data=table data.path=houses.csv data.target=cost
    assert proc.returncode == 2
    lines = own_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: data.target='cost' is not a column"), proc.stderr
    assert "columns: ['x1', 'x2', 'city', 'y']" in lines[0]
    assert "Traceback" not in proc.stderr and runs_in(cwd / "m.db") == 0


def test_image_folder_cli_run_beats_chance(cli, request):
    cwd, proc = finished(cli, request)  # data=image_folder data.root=shades, 3 epochs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert metric_of(proc, "accuracy") >= 5 / 6  # chance is 1/3; 6 test images


def test_mask_folder_cli_run(cli, request):
    cwd, proc = finished(cli, request)  # data=mask_folder data.images=pairs/images data.masks=pairs/masks, 5 epochs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert metric_of(proc, "miou") > 0.5
