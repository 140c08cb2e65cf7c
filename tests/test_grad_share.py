"""trainer.grad_share (harness/grad_share.py): each data group's share of |dL/d output| per epoch, against shares
computed by hand, through the training loop on every task that knows groups, and without changing the training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from fixtures import write_idx_dataset
from harness import tasks
from harness.compare import main as compare_main
from harness.config import ConfigError
from harness.data import build_data
from harness.grad_share import GradShare
from harness.run import execute


def test_mse_shares_by_hand():
    # mean squared error: dL/dy_i = 2 (y_i - t_i) / n, so a group's share is its sum of |residuals| over the total
    residuals = torch.tensor([0.5, -1.0, 4.0, 0.25, -8.0, 1.0])
    outliers = torch.tensor([False, False, True, False, True, False])
    shares = GradShare({"outliers": outliers, "clean": ~outliers})
    for idx in (torch.tensor([0, 2, 4]), torch.tensor([5, 1, 3])):  # two steps, each its own mean
        output = residuals[idx].clone().unsqueeze(1).requires_grad_()
        F.mse_loss(output, torch.zeros_like(output)).backward()
        shares.add(output.grad, idx)
    # step 1: |r| = 0.5, 4, 8 over 3 -> 2/3 * (0.5, 4, 8); step 2: 1, 1, 0.25 over 3; the 2/3 cancels
    assert shares.epoch() == pytest.approx({"grad_share/outliers": 12 / 14.75, "grad_share/clean": 2.75 / 14.75})
    assert shares.epoch() == {"grad_share/outliers": 0.0, "grad_share/clean": 0.0}  # reset after each epoch
    assert shares.fractions() == pytest.approx({"outliers": 2 / 6, "clean": 4 / 6})


def test_a_scaled_gradient_counts_alike_and_a_non_finite_step_not_at_all():
    outliers = torch.tensor([True, False, False, False])
    plain, scaled = GradShare({"outliers": outliers}), GradShare({"outliers": outliers})
    grad = torch.tensor([[4.0], [1.0], [-1.0], [2.0]])
    plain.add(grad, torch.arange(4))
    scaled.add(grad * 65536, torch.arange(4), scale=65536.0)  # a GradScaler's loss scale, divided out
    scaled.add(torch.tensor([[float("inf")], [1.0], [0.0], [0.0]]), torch.arange(4))  # a step the scaler skips
    assert plain.epoch() == scaled.epoch() == pytest.approx({"grad_share/outliers": 0.5})


def test_per_pixel_shares_by_hand():
    # softmax cross-entropy per pixel: dL/dz = (softmax(z) - onehot) / pixels, whose channel sum of |.| is 2 (1 - p_true)
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    masks = torch.randint(0, 3, (2, 4, 4))
    shares = GradShare({"foreground": masks > 0, "background": masks == 0})
    F.cross_entropy(logits, masks).backward()
    shares.add(logits.grad, torch.arange(2))
    p_true = logits.detach().softmax(1).gather(1, masks.unsqueeze(1)).squeeze(1)
    per_pixel = 2 * (1 - p_true)
    expected = per_pixel[masks > 0].sum() / per_pixel.sum()
    got = shares.epoch()
    assert got["grad_share/foreground"] == pytest.approx(float(expected), rel=1e-5)
    assert got["grad_share/foreground"] + got["grad_share/background"] == pytest.approx(1.0)


def test_mismatched_shapes_are_refused():
    shares = GradShare({"a": torch.ones(2, 5, 5, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"outputs of shape \(2, 3, 4, 4\) do not match group masks of shape \(2, 5, 5\)"):
        shares.add(torch.ones(2, 3, 4, 4), torch.arange(2))


def shares_of(result) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k.startswith("grad_share/")} for h in result.history]


def test_mse_spends_its_gradient_on_the_outliers_and_huber_does_not(make_cfg, store, tmp_path, capsys):
    quick = ["data=outliers", "trainer.epochs=8", "trainer.grad_share=true", "tracking.log_plots=true"]
    mse, huber = execute(make_cfg("loss=mse", *quick)), execute(make_cfg("loss=huber", *quick))
    for result in (mse, huber):
        assert all(s["grad_share/outliers"] + s["grad_share/clean"] == pytest.approx(1.0) for s in shares_of(result))
    # 10% of the targets are outliers; MSE's gradient grows with the residual, Huber's is capped at delta
    assert min(s["grad_share/outliers"] for s in shares_of(mse)) > 0.45
    assert max(s["grad_share/outliers"] for s in shares_of(huber)) < 0.25
    client = MlflowClient(tracking_uri=store)
    run = client.get_run(mse.run_id)
    assert run.data.params["grad_share.outliers_fraction"] == "0.1" and run.data.params["grad_share.clean_fraction"] == "0.9"
    history = client.get_metric_history(mse.run_id, "grad_share/outliers")
    assert [m.step for m in history] == list(range(1, 9))
    assert [m.value for m in history] == pytest.approx([s["grad_share/outliers"] for s in shares_of(mse)])
    assert "plots/grad_share.png" in {a.path for a in client.list_artifacts(mse.run_id, "plots")}
    # the comparison of the two draws where each loss's gradient goes (and names the file it wrote)
    out = tmp_path / "cmp"
    assert compare_main(["--experiment", "loss-harness", "--tracking-uri", store, "--out", str(out)]) == 0
    assert "grad_share.png" in capsys.readouterr().out.splitlines()[-1] and (out / "grad_share.png").stat().st_size > 10_000


def test_mae_shares_its_gradient_in_proportion_to_the_data(make_cfg):
    # |d mae / d output| = 1/n for every example with a nonzero residual: each group's share is its share of the data
    # (batches of 100 divide the 1000 training examples: every step weighs its examples alike)
    result = execute(make_cfg("data=outliers", "loss=mae", "trainer.epochs=3", "trainer.batch_size=100", "trainer.grad_share=true"))
    assert [s["grad_share/outliers"] for s in shares_of(result)] == pytest.approx([0.1] * 3, abs=1e-6)


def test_watching_the_gradient_does_not_change_the_training(make_cfg):
    on = execute(make_cfg("data=outliers", "loss=huber", "trainer.epochs=3", "trainer.grad_share=true"))
    off = execute(make_cfg("data=outliers", "loss=huber", "trainer.epochs=3"))
    assert on.test == off.test
    assert [{k: v for k, v in h.items() if not k.startswith("grad_share/")} for h in on.history] == off.history


@pytest.mark.parametrize(("data", "groups"), [
    (["data=imbalanced", "data.n_samples=400", "data.positive_fraction=0.1"], ("positives", "negatives")),
    (["data=segmentation", "data.n_train=8", "data.n_val=4", "data.n_test=4", "data.image_size=16"], ("foreground", "background")),
    (["data=mnist", "data.download=false", "data.label_noise=0.3", "data.root=TMP"], ("flipped", "clean")),
    (["data=mnist", "data.download=false", "data.label_noise=0.0", "data.root=TMP"], ("flipped", "clean")),
])
def test_every_task_that_knows_groups_logs_them(make_cfg, tmp_path, data, groups):
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    data = [o.replace("TMP", str(tmp_path)) for o in data]
    cfg = make_cfg(*data, "trainer.epochs=2", "trainer.batch_size=32", "trainer.grad_share=true")
    bundle = build_data(cfg.data, cfg.seed)
    masks = tasks.of_config(cfg).gradient_groups(bundle)
    assert tuple(masks) == groups and not (masks[groups[0]] & masks[groups[1]]).any()
    assert masks[groups[0]].shape in (bundle.train.y.shape, (len(bundle.train.y),))
    result = execute(cfg)
    for s in shares_of(result):
        assert set(s) == {f"grad_share/{g}" for g in groups} and sum(s.values()) == pytest.approx(1.0)
        if masks[groups[0]].any():
            assert all(0 < v < 1 for v in s.values())
        else:  # no label flipped (label_noise=0): the clean examples get all of it
            # the group's sum and the total add the same gradients in different orders: equal to float32 rounding
            assert s["grad_share/flipped"] == 0.0 and s["grad_share/clean"] == pytest.approx(1.0, rel=1e-6)


def test_data_without_groups_is_refused_before_any_run(make_cfg, tmp_path):
    (tmp_path / "houses.csv").write_text("rooms,price\n" + "".join(f"{i % 7},{3 * i}\n" for i in range(60)))
    with pytest.raises(ConfigError, match=r"trainer.grad_share=true: data=table \(regression\) has no groups"):
        execute(make_cfg("data=table", f"data.path={tmp_path / 'houses.csv'}", "data.target=price", "trainer.grad_share=true"))
    assert not (tmp_path / "mlflow.db").exists()  # the store (the test's, in tmp_path) was never opened
