"""The four axes as registries, and the device boundary (DESIGN.md): tasks own their knowledge, datasets and
models register once, option lists live in one place, and results reach metrics and plots only through
``harness.evaluation.evaluate``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import losses
from conftest import REPO
from harness import compare, data, models, optim, plots, tasks
from harness.__main__ import CONF_DIR
from harness.evaluation import DeviceBoundaryError, Evaluation, evaluate, require_host

HARNESS = REPO / "harness"
META = torch.device("meta")


def _to_host_calls(path: Path) -> list[int]:
    """Lines calling ``.cpu()`` or ``.to("cpu")``."""
    def to_host(n: ast.AST) -> bool:
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
            return False
        if n.func.attr == "cpu":
            return True
        return n.func.attr == "to" and any(isinstance(a, ast.Constant) and a.value == "cpu" for a in n.args)

    return [n.lineno for n in ast.walk(ast.parse(path.read_text())) if to_host(n)]


def test_results_cross_to_the_cpu_only_in_the_evaluation_module():
    """Data builders work on the CPU before anything reaches a device; everything else leaves the device only
    through ``harness.evaluation``."""
    offenders = {
        str(p.relative_to(REPO)): _to_host_calls(p)
        for p in HARNESS.rglob("*.py")
        if p.name != "evaluation.py" and p.parent.name != "data" and _to_host_calls(p)
    }
    assert offenders == {}


def test_no_branch_on_a_task_name_outside_the_task_modules():
    names = set(tasks.available())
    offenders = []
    for path in HARNESS.rglob("*.py"):
        if path.parent.name == "tasks":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in names for c in node.comparators):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def _meta(*shape: int, dtype=torch.float32) -> torch.Tensor:
    return torch.empty(*shape, device=META, dtype=dtype)


CASES = {
    "regression": (_meta(8), _meta(8)),
    "binary": (_meta(8), _meta(8, dtype=torch.long)),
    "multiclass": (_meta(8, 3), _meta(8, dtype=torch.long)),
    "segmentation": (_meta(2, 1, 4, 4), _meta(2, 4, 4, dtype=torch.long)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_task_metrics_refuse_tensors_still_on_a_device(name):
    output, target = CASES[name]
    with pytest.raises(DeviceBoundaryError, match=f"{name} metrics got a tensor on meta"):
        tasks.get(name).compute(output, target, 2)


def test_plots_refuse_tensors_still_on_a_device():
    t = _meta(8)
    with pytest.raises(DeviceBoundaryError, match="plots.regression_fit"):
        plots.regression_fit(t, t, t, t, _meta(8, dtype=torch.bool), "x")
    with pytest.raises(DeviceBoundaryError, match="plots.pr_curve"):
        plots.pr_curve(t, t, "x")
    with pytest.raises(DeviceBoundaryError, match="plots.confusion_matrix"):
        plots.confusion_matrix(_meta(2, 2), "x")
    with pytest.raises(DeviceBoundaryError, match="plots.reliability_diagram"):
        plots.reliability_diagram(_meta(8, 3), _meta(8, dtype=torch.long), "x")
    with pytest.raises(DeviceBoundaryError, match="plots.mask_grid"):
        plots.mask_grid(_meta(2, 1, 4, 4), _meta(2, 4, 4), _meta(2, 4, 4), "x")


def test_evaluation_holds_cpu_tensors_and_evaluate_moves_them_there():
    with pytest.raises(DeviceBoundaryError, match="Evaluation got a tensor on meta"):
        Evaluation(_meta(4), torch.zeros(4))
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(10, 3), torch.randn(10)
    result = evaluate(model, x, y, batch_size=4)
    assert result.output.shape == (10,) and result.output.device.type == "cpu" and torch.equal(result.target, y)
    assert torch.allclose(result.output, model(x).squeeze(1).detach())
    require_host("here", result.output, result.target)  # no error


def test_every_task_declares_its_monitor_among_its_metrics_and_compare_uses_their_directions():
    assert sorted(tasks.available()) == ["binary", "multiclass", "regression", "segmentation"]
    for name in tasks.available():
        task = tasks.get(name)
        assert task.monitor in task.metrics
        for metric, lower in task.metrics.items():
            assert compare.lower_is_better(f"test/{metric}") is lower
    assert compare.lower_is_better("train/loss") and compare.lower_is_better("time/train_s")
    assert not compare.lower_is_better("test/accuracy") and compare.lower_is_better("val/ece")
    with pytest.raises(ValueError, match=r"task 'ranking' is unknown; valid: \['binary', 'multiclass'"):
        tasks.get("ranking")


def test_output_width_comes_from_the_task():
    assert tasks.get("regression").num_outputs(losses.spec("huber"), None) == 1
    assert tasks.get("binary").num_outputs(losses.spec("bce"), 2) == 1
    assert tasks.get("multiclass").num_outputs(losses.spec("ce"), 7) == 7
    seg = tasks.get("segmentation")
    assert seg.num_outputs(losses.spec("dice"), 2) == 1 and seg.num_outputs(losses.spec("dice"), 4) == 4
    assert seg.num_outputs(losses.spec("ce"), 2) == 2


def test_label_to_target_adapters():
    out = torch.zeros(3, 4)
    labels = torch.tensor([0, 3, 1])
    _, one_hot = tasks.get("multiclass").prepare(out, labels, 4, "one_hot")
    assert torch.equal(one_hot, torch.eye(4)[labels])
    _, index = tasks.get("multiclass").prepare(out, labels, 4, "index")
    assert index is labels
    _, binary = tasks.get("binary").prepare(torch.zeros(3, 1), torch.tensor([0, 1, 1]), 1, "binary")
    assert binary.shape == (3, 1) and binary.dtype == torch.float32 and binary.sum() == 2
    masks = torch.randint(0, 3, (2, 5, 5))
    _, seg = tasks.get("segmentation").prepare(torch.zeros(2, 3, 5, 5), masks, 3, "one_hot")
    assert seg.shape == (2, 3, 5, 5) and torch.equal(seg.argmax(1), masks)


def _conf_options(group: str) -> set[str]:
    return {p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml")}


def test_option_lists_live_once_each_registry_matches_its_config_group():
    assert _conf_options("optim") == set(optim.available())  # adamw included
    assert _conf_options("model") == set(models.available())
    assert set(data.available()) <= _conf_options("data")
    for option in _conf_options("data"):
        from omegaconf import OmegaConf

        assert OmegaConf.load(Path(CONF_DIR) / "data" / f"{option}.yaml").data.name in data.available()


def test_a_dataset_registers_once_with_its_task_and_its_class_count_comes_from_the_data(make_cfg):
    spec = data.get_dataset("breast_cancer")
    assert spec.task == "binary"
    bundle = data.build_data(make_cfg("data=segmentation", "data.num_classes=3", "data.n_train=8", "data.n_val=2",
                                      "data.n_test=2", "data.image_size=16").data, 0)
    assert bundle.num_classes == 3 and bundle.input_shape == (1, 16, 16)
    with pytest.raises(ValueError, match=r"data.name='nosuch' is unknown; valid: \['breast_cancer'"):
        data.get_dataset("nosuch")


def test_a_new_dataset_is_one_registered_builder(make_cfg, monkeypatch):
    """A dataset registered from outside the package trains through the unchanged runner."""
    from omegaconf import OmegaConf

    from harness.data import DataBundle, Split, register_dataset, registry
    from harness.run import execute

    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))  # this test's registration ends with it

    @register_dataset("sine_test", task="regression")
    def make_sine(cfg, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(300, 1, generator=g) * 6 - 3
        y = torch.sin(x[:, 0]) + 0.1 * torch.randn(300, generator=g)
        return DataBundle("sine_test", "regression", Split(x[:200], y[:200]), Split(x[200:250], y[200:250]),
                          Split(x[250:], y[250:]), (1,), source="test")

    cfg = make_cfg("model=mlp", "trainer.epochs=60", "optim.lr=0.01")
    cfg.data = OmegaConf.create({"name": "sine_test"})
    result = execute(cfg)
    assert result.status == "FINISHED" and result.test["rmse"] < 0.3  # sin has sd 0.7 on [-3, 3]; noise 0.1
