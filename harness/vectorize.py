"""Many runs in one training loop (``trainer.vectorize=true``): members that differ only in their seed (and in a
loss's numeric settings, or the data's) are stacked into one model with :func:`torch.func.stack_module_state` and
trained by ``torch.vmap`` over :func:`torch.func.functional_call`.

Each member keeps what it would have alone: its own data (built from its seed), split, initial weights, batch order
(a generator seeded by its seed), loss, class weights, best epoch and metrics. The members' losses are summed before
the backward pass; a member's parameters get gradient from its own loss only, and Adam, AdamW and SGD (with momentum
and weight decay) update every element on its own, so one optimiser over the stacked parameters gives each member
the update it would get alone. Each step equals the one-by-one run's to float rounding (batched kernels add in
another order; ``tests/test_vectorize.py`` states the tolerance), so a convex problem (the linear studies) ends where
it would alone, while a long non-convex run can amplify that rounding as any change of kernel would (the imbalanced
study's MLP: one run in ten drifts by 0.01 PR-AUC over 20 epochs). A member whose loss turns non-finite fails alone;
the others go on.

What cannot be stacked is refused with a reason (:func:`refusal`, :class:`NotStackable`) and the harness runs those
jobs one by one: random layers in training (dropout: each member would draw from one stream), mixed precision (one
loss scale for all), different models or data shapes.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from .criterion import Criterion
from .data import DataBundle
from .evaluation import evaluate_stacked
from .grad_share import StackedGradShare
from .optim import build_optimizer, build_scheduler
from .train import BestEpoch, NonFiniteLoss, non_finite, progress_mode

RANDOM_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class NotStackable(RuntimeError):
    """These members cannot share one loop; the message says why (they then run one by one)."""


def stack_key(cfg: DictConfig) -> str:
    """What members of one stack must share: the config without its seed, run name and tags, and with the numeric
    settings of the loss and the data blanked (each member builds its own loss and data from them)."""
    tree = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    assert isinstance(tree, dict)
    tree.pop("seed", None)
    tree.get("tracking", {}).pop("run_name", None)
    tree.get("tracking", {}).pop("tags", None)

    def blank(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: blank(v) for k, v in node.items()}
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return "<number>"
        return node

    for group in ("loss", "data"):
        if group in tree:
            tree[group] = blank(tree[group])
    return repr(tree)


def refusal(cfg: DictConfig) -> str | None:
    """Why runs of ``cfg`` cannot be stacked, from the config alone, or ``None``."""
    if str(cfg.trainer.get("precision", "32")) != "32":
        return f"trainer.precision={cfg.trainer.precision} (one loss scale would serve every member): use 32"
    if float(cfg.model.get("dropout", 0) or 0) > 0:
        return f"model.dropout={cfg.model.dropout} (members would draw their dropout masks from one random stream)"
    return None


@dataclass
class Member:
    """One run inside a stack: its model, loss and data on the training device, its seed (batch order), and what it
    records: ``on_epoch(epoch, metrics)``, its :class:`BestEpoch`; after :func:`fit_stacked`, its ``history`` and,
    if it failed, ``error``."""

    model: nn.Module
    criterion: Criterion
    data: DataBundle
    seed: int
    on_epoch: Callable[[int, dict[str, float]], None] | None = None
    best: BestEpoch | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    error: NonFiniteLoss | None = None


def check_members(members: Sequence[Member]) -> None:
    """:class:`NotStackable` unless every member has the same model (class, parameter names and shapes), data
    shapes and device, and no random layer in training."""
    first = members[0]
    shapes = _signature(first)
    for i, m in enumerate(members[1:], 1):
        if type(m.model) is not type(first.model):
            raise NotStackable(f"member {i} has model {type(m.model).__name__}, member 0 {type(first.model).__name__}")
        if _signature(m) != shapes:
            raise NotStackable(f"member {i}'s model or data shapes differ from member 0's")
    random = [type(layer).__name__ for layer in first.model.modules() if isinstance(layer, RANDOM_LAYERS) and layer.p > 0]
    if random:
        raise NotStackable(f"the model has random layers in training ({', '.join(random)})")
    params, buffers = stack_module_state([m.model for m in members[:2]])
    try:  # a model vmap cannot batch (data-dependent control flow, in-place updates of unbatched state)
        with torch.no_grad():
            stacked_forward(first.model)(params, buffers, torch.stack([m.data.train.x[:2] for m in members[:2]]))
    except Exception as err:  # noqa: BLE001 - reported as the reason to run one by one
        raise NotStackable(f"torch.vmap cannot run the model: {type(err).__name__}: {' '.join(str(err).split())[:300]}") from None


CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def slower_stacked(members: Sequence[Member]) -> str | None:
    """Why stacking these members would be slower than training them one by one, or ``None``: on a CPU, vmapped
    convolutions take longer than the members' own (``python -m benchmarks.vectorize``: the MNIST CNN and the U-Net
    at 0.3x-0.9x on 2 cores); on a GPU they are stacked (not measured: no GPU was lent to this work)."""
    convs = any(isinstance(layer, CONVOLUTIONS) for layer in members[0].model.modules())
    if convs and members[0].data.train.x.device.type == "cpu":
        return "convolutions stacked by torch.vmap are slower than one by one on a CPU (benchmarks/README.md)"
    return None


def _signature(m: Member) -> tuple:
    model = tuple((k, tuple(v.shape), v.dtype) for k, v in m.model.state_dict().items())
    data = tuple((tuple(s.x.shape), tuple(s.y.shape), s.x.dtype, s.y.dtype, str(s.x.device)) for s in (m.data.train, m.data.val, m.data.test))
    return model, data


class _CriterionCall(nn.Module):
    """A criterion as a module whose loss buffers (``loss.<name>``) ``functional_call`` can swap per member."""

    def __init__(self, criterion: Criterion) -> None:
        super().__init__()
        self.loss = criterion.module
        self.criterion = criterion

    def forward(self, output: Tensor, labels: Tensor, sample_weights: Tensor | None) -> Tensor:
        if sample_weights is None:
            return self.criterion(output, labels)
        return replace(self.criterion, sample_weights=sample_weights)(output, labels)


def shared_loss(members: Sequence[Member]) -> str | None:
    """Why the members' losses cannot be computed by one call for all (then each is called on its own slice), or
    ``None``: same loss class and fixed settings, tensors (class weights) only in buffers, nothing learned, no
    per-epoch schedule, no per-example side inputs."""
    from losses import Loss

    mods = [m.criterion.module for m in members]
    first = mods[0]
    if not isinstance(first, Loss) or any(type(x) is not type(first) for x in mods):
        return "not one built-in loss"
    if any(True for _ in first.children()):  # a user's loss wrapped: its settings live in a module we cannot compare
        return "the loss holds modules"
    if any(p.requires_grad for x in mods for p in x.parameters()):
        return "the loss learns parameters"
    if type(first).start_epoch is not Loss.start_epoch:
        return "the loss follows a schedule"
    if any(x.params != first.params or set(x._buffers) != set(first._buffers) for x in mods):
        return "the losses' settings differ"
    crits = [m.criterion for m in members]
    if any(c.side for c in crits) or len({c.sample_weights is None for c in crits}) > 1:
        return "per-example side inputs"
    return None


def _loss_function(members: Sequence[Member]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``losses(output [M, B, ...], labels [M, B, ...], idx [M, B]) -> [M]``, each member's batch loss, computed the
    cheapest way that gives every member's own value: where :func:`shared_loss` allows, one call on all members'
    elements with ``reduction='none'`` averaged per member (for a loss that is a plain mean of per-element terms)
    or, failing that, one vmapped call; else each member's criterion on its slice. The faster forms are used only
    when they give the per-member values on two real training batches."""
    crits = [m.criterion for m in members]

    def looped(output: Tensor, labels: Tensor, idx: Tensor) -> Tensor:
        return torch.stack([c(output[i], labels[i], idx[i]) for i, c in enumerate(crits)])

    if shared_loss(members) is not None:
        return looped
    candidates = []
    first = crits[0]
    same_buffers = all(torch.equal(c.module._buffers[k], first.module._buffers[k]) for c in crits for k in first.module._buffers)
    if first.sample_weights is None and same_buffers and not first.task.per_pixel:  # pixel losses may skip void pixels

        def flat(output: Tensor, labels: Tensor, idx: Tensor) -> Tensor:
            o, t = first.prepare(output.flatten(0, 1), labels.flatten(0, 1))
            return first.module(o, t, reduction="none").reshape(len(output), -1).mean(1)

        candidates.append(flat)
    call = _CriterionCall(first)
    buffers = {f"loss.{k}": torch.stack([c.module._buffers[k] for c in crits]) for k in first.module._buffers}
    weights = torch.stack([c.sample_weights for c in crits]) if first.sample_weights is not None else None

    def one(state: dict[str, Tensor], w: Tensor | None, output: Tensor, labels: Tensor) -> Tensor:
        return functional_call(call, state, (output, labels, w)) if state else call(output, labels, w)

    batched = torch.vmap(one, in_dims=(0, 0 if weights is not None else None, 0, 0))

    def vmapped(output: Tensor, labels: Tensor, idx: Tensor) -> Tensor:
        return batched(buffers, weights, output, labels)

    candidates.append(vmapped)
    was_training = [m.model.training for m in members]
    chosen = looped
    with torch.no_grad():
        batches = []
        for start in (0, len(members[0].data.train.x) // 2):
            idx = torch.arange(start, start + 8, device=members[0].data.train.x.device).clamp_max(len(members[0].data.train.x) - 1)
            out = torch.stack([m.model.eval()(m.data.train.x[idx]) for m in members])  # eval: no running statistics change
            labels = torch.stack([m.data.train.y[idx] for m in members])
            idx = idx.expand(len(members), -1)
            batches.append((out, labels, idx, looped(out, labels, idx)))
        for candidate in candidates:
            try:  # data-dependent control flow cannot be vmapped; a batch-level statistic breaks the flat form
                if all(torch.allclose(candidate(o, l, i), want, rtol=1e-5, atol=1e-7) for o, l, i, want in batches):
                    chosen = candidate
                    break
            except Exception:  # noqa: BLE001 - any limitation: the next form, and the per-member one, are always right
                continue
    for m, mode in zip(members, was_training):
        m.model.train(mode)
    return chosen


def loss_form(loss_of: Callable) -> str:
    """How :func:`_loss_function` computes the members' losses: ``flat``, ``vmapped`` or ``looped``."""
    return loss_of.__name__


class _Stacked(nn.Module):
    """Holds the stacked parameters for the optimiser."""

    def __init__(self, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.stacked = nn.ParameterList([nn.Parameter(p.detach()) for p in params.values()])


class _MemberState:
    """Member ``i``'s slice of the stacked state, as :class:`BestEpoch` reads it (``state_dict()``)."""

    def __init__(self, stacked: dict[str, Tensor], keys: list[str], i: int) -> None:
        self.stacked, self.keys, self.i = stacked, keys, i

    def state_dict(self) -> dict[str, Tensor]:
        return {k: self.stacked[k][self.i] for k in self.keys}


SIMPLE_LAYERS = (nn.Flatten, nn.Linear, nn.ReLU, nn.GELU, nn.Tanh, nn.Identity, *RANDOM_LAYERS)


def stacked_forward(model: nn.Module) -> Callable[[dict[str, Tensor], dict[str, Tensor], Tensor], Tensor]:
    """``forward(params, buffers, x [M, B, ...]) -> [M, B, ...]``: ``model`` applied with each member's parameters
    to its own batch. A plain stack of linear layers and activations (the built-in ``linear`` and ``mlp``) runs as
    batched matrix products; anything else through ``torch.vmap`` of :func:`torch.func.functional_call`, whose
    per-call cost is about ten times a small layer's on a CPU."""
    layers = list(model) if isinstance(model, nn.Sequential) else None
    simple = layers is not None and all(type(layer) in SIMPLE_LAYERS for layer in layers)
    if not simple or any(isinstance(layer, RANDOM_LAYERS) and layer.p > 0 for layer in layers or []):
        base = copy.deepcopy(model).to("meta")

        def one(p: dict[str, Tensor], b: dict[str, Tensor], inputs: Tensor) -> Tensor:
            return functional_call(base, (p, b), (inputs,))

        vmapped = torch.vmap(one, randomness="error")
        vmapped.train, vmapped.eval = base.train, base.eval  # type: ignore[attr-defined]
        return vmapped
    assert layers is not None

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Flatten):
                x = x.flatten(layer.start_dim + 1, layer.end_dim if layer.end_dim < 0 else layer.end_dim + 1)
            elif isinstance(layer, nn.Linear):
                w = p[f"{i}.weight"].transpose(1, 2)
                x = torch.baddbmm(p[f"{i}.bias"].unsqueeze(1), x, w) if f"{i}.bias" in p else torch.bmm(x, w)
            elif not isinstance(layer, RANDOM_LAYERS):  # p == 0 here: dropout is the identity
                x = layer(x)
        return x

    forward.train = forward.eval = lambda: None  # type: ignore[attr-defined]
    return forward


def fit_stacked(members: Sequence[Member], cfg: DictConfig) -> None:
    """Train ``members`` together for ``cfg.trainer.epochs`` (``cfg``: the trainer and optimiser settings they
    share); fill each member's ``history`` (the dicts :func:`harness.train.fit` returns), call its ``on_epoch``,
    update its ``best``, and leave its model holding its final weights. A member whose loss (or whose gradients)
    turn non-finite gets ``error`` (the :class:`NonFiniteLoss` it would raise alone, at the same epoch and step) and
    stops; the others go on.
    """
    check_members(members)
    first = members[0]
    device = first.data.train.x.device
    count = len(members)
    x = torch.stack([m.data.train.x for m in members])
    y = torch.stack([m.data.train.y for m in members])
    val_x = torch.stack([m.data.val.x for m in members])
    n, batch_size, epochs = x.shape[1], cfg.trainer.batch_size, cfg.trainer.epochs
    steps_per_epoch = math.ceil(n / batch_size)
    check_each_step = device.type == "cpu"

    params, buffers = stack_module_state([m.model for m in members])
    holder = _Stacked(params)
    params = dict(zip(params, holder.stacked))
    keys = list(first.model.state_dict())
    state = {**params, **buffers}
    forward = stacked_forward(first.model)
    loss_of = _loss_function(members)
    loss_modules = nn.ModuleList([m.criterion.module for m in members])
    optimizer = build_optimizer(cfg.optim, holder, loss_modules, fused=device.type in ("cpu", "cuda"))
    scheduler = build_scheduler(cfg.optim, optimizer, epochs * steps_per_epoch)
    orders = [torch.Generator().manual_seed(m.seed) for m in members]
    task = first.criterion.task
    groups = [m.criterion.task.gradient_groups(m.data) for m in members] if cfg.trainer.get("grad_share") else None
    shares = StackedGradShare(groups, device) if groups and groups[0] else None
    rows = torch.arange(count, device=device)[:, None]

    bar_on, lines_on = progress_mode(cfg.trainer.get("progress", "auto"))
    bar = tqdm(total=epochs * steps_per_epoch, disable=not bar_on, unit="step", dynamic_ncols=True)
    started = time.perf_counter()

    dead: set[int] = set()

    def fail(i: int, err: NonFiniteLoss) -> None:
        members[i].error = err
        dead.add(i)

    def member_params(i: int) -> list[Tensor]:
        return [p[i] for p in params.values()]

    try:
        for epoch in range(1, epochs + 1):
            forward.train()
            for m in members:
                m.criterion.module.start_epoch(epoch, epochs)
            perm = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)
            step_losses = torch.empty(steps_per_epoch, count, device=device)
            for step in range(steps_per_epoch):
                idx = perm[:, step * batch_size : (step + 1) * batch_size]
                output = forward(params, buffers, x[rows, idx])
                if shares is not None:
                    output.retain_grad()
                losses = loss_of(output, y[rows, idx], idx)
                step_losses[step] = losses.detach()
                if check_each_step:
                    values = losses.tolist()
                    global_step = (epoch - 1) * steps_per_epoch + step + 1
                    for i, v in enumerate(values):
                        if i not in dead and not math.isfinite(v):
                            fail(i, non_finite(member_params(i), epoch, global_step, steps_per_epoch, v))
                    if len(dead) == count:
                        return
                optimizer.zero_grad(set_to_none=True)
                alive = None if not dead else torch.tensor([i not in dead for i in range(count)], device=device)
                (losses.sum() if alive is None else torch.where(alive, losses, 0.0).sum()).backward()
                if alive is not None:
                    for p in holder.stacked:
                        if p.grad is not None:
                            p.grad[~alive] = 0.0
                optimizer.step()
                if shares is not None:
                    shares.add(output.grad, idx)
                if scheduler is not None:
                    scheduler.step()
                bar.update()

            losses_host = step_losses.T.tolist()  # one host sync
            for i, values in enumerate(losses_host):
                bad = next((s for s, v in enumerate(values) if not math.isfinite(v)), None)
                if i not in dead and bad is not None:
                    fail(i, NonFiniteLoss(epoch, (epoch - 1) * steps_per_epoch + bad + 1, values[bad]))
            if len(dead) == count:
                return
            forward.eval()
            val_evals = evaluate_stacked(lambda inputs: forward(params, buffers, inputs), val_x, [m.data.val.y for m in members])
            epoch_shares = shares.epoch() if shares is not None else None
            for i, m in enumerate(members):
                if i in dead:
                    continue
                metrics = {"train/loss": sum(losses_host[i]) / len(losses_host[i])}
                metrics.update({f"loss/{k}": v for k, v in m.criterion.module.learned().items()})
                if epoch_shares is not None:
                    metrics.update(epoch_shares[i])
                val = task.score(val_evals[i], m.data)
                metrics.update({f"val/{k}": v for k, v in val.items()})
                m.history.append(metrics)
                if m.best is not None:
                    m.best.update(epoch, val[m.best.monitor], _MemberState(state, keys, i))
                if m.on_epoch is not None:
                    m.on_epoch(epoch, metrics)
            living = [i for i in range(count) if i not in dead]
            monitor = [members[i].history[-1][f"val/{task.monitor}"] for i in living]
            mean_loss = sum(members[i].history[-1]["train/loss"] for i in living) / len(living)
            bar.set_postfix(epoch=epoch, members=len(living), loss=f"{mean_loss:.4g}")
            if lines_on:
                print(
                    f"epoch {epoch}/{epochs}  {len(living)} stacked runs  mean train/loss {mean_loss:.4g}  "
                    f"mean val/{task.monitor} {sum(monitor) / len(monitor):.4g}  {time.perf_counter() - started:.2f}s",
                    file=sys.stderr, flush=True,
                )
    finally:
        bar.close()
        with torch.no_grad():
            for i, m in enumerate(members):
                m.model.load_state_dict({k: state[k][i] for k in keys})

