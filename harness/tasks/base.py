"""The task interface and its registry.

A task (regression, binary, multiclass, segmentation) owns everything the harness must know about a kind of
prediction problem: the model's output width for a loss, the label-to-target adapter, which losses and models fit
it, its metrics with their directions and the monitored one, and its plots. The runner, the validator, the
criterion, ``fit`` and ``compare`` ask the task; nothing else branches on a task's name. Register a new task with
:func:`register` (one module per task, as ``harness/tasks/regression.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from torch import Tensor

from ..evaluation import Evaluation, require_host

if TYPE_CHECKING:
    from losses import LossSpec

    from ..data import DataBundle
    from ..models import ModelSpec

Figures = dict[str, Any]  # artifact path -> matplotlib figure


class Task:
    """One kind of prediction problem. Subclasses set the class attributes and override what differs.

    ``metrics``: metric name -> lower is better, in display order. ``monitor``: the validation metric shown in the
    progress bar and returned to sweepers. ``target_format``: the target format (see ``losses.TARGETS``) a user's
    own loss receives unless its config says otherwise; ``target_formats`` all that :meth:`prepare` can give. ``per_pixel``: models must emit one output per pixel.
    ``classification``: labels are classes (class counts, class weights apply).
    """

    name: ClassVar[str]
    metrics: ClassVar[Mapping[str, bool]]
    monitor: ClassVar[str]
    target_format: ClassVar[str]
    target_formats: ClassVar[tuple[str, ...]]
    per_pixel: ClassVar[bool] = False
    classification: ClassVar[bool] = True

    def classes_in_config(self, data_cfg: Any) -> int | None:
        """The class count the ``data`` config fixes before the data is built (``data.num_classes``), if any."""
        return data_cfg.get("num_classes") if self.classification else None

    def num_outputs(self, spec: "LossSpec", num_classes: int | None) -> int:
        """Width of the model's output (channels, for masks) that a loss with ``spec`` needs."""
        return 1

    def incompatibility(self, spec: "LossSpec", num_classes: int | None) -> str | None:
        """Why a loss with ``spec`` cannot train this task (``num_classes`` when known), or ``None``."""
        if self.name not in spec.tasks:
            return f"it serves {list(spec.tasks)}, not {self.name}"
        return None

    def model_incompatibility(self, model: "ModelSpec", input_shape: tuple[int, ...] | None) -> str | None:
        """Why ``model`` cannot serve this task on inputs of ``input_shape`` (when known), or ``None``."""
        if model.per_pixel and not self.per_pixel:
            return f"{model.name} outputs masks; it serves segmentation only"
        if self.per_pixel and not model.per_pixel:
            return "segmentation needs per-pixel outputs: use model=unet (or a model of yours that emits masks)"
        if model.input_rank is not None and input_shape is not None and len(input_shape) != model.input_rank:
            return f"{model.name} needs inputs of rank {model.input_rank} {model.input_kind}, this data has {tuple(input_shape)}"
        return None

    def loss_settings(self, spec: "LossSpec", num_outputs: int) -> dict[str, Any]:
        """Arguments this task sets on a loss with ``spec`` unless the config sets them (e.g. a mask loss's ``mode``)."""
        return {}

    def side_inputs(self, spec: "LossSpec", labels: Tensor, num_outputs: int) -> dict[str, Tensor]:
        """Per-example arguments a loss with ``spec`` takes besides the target, computed once from the training
        ``labels`` (aligned with them, indexed with each batch), e.g. a boundary loss's distance maps; none here."""
        return {}

    def gradient_groups(self, data: "DataBundle") -> dict[str, Tensor]:
        """Groups of the training data whose share of the loss gradient ``trainer.grad_share`` logs
        (:mod:`harness.grad_share`): name -> boolean mask over the training examples (``[N]``) or their target
        elements (the targets' shape), the groups disjoint; none here."""
        return {}

    def prepare(self, output: Tensor, labels: Tensor, num_outputs: int, target_format: str) -> tuple[Tensor, Tensor]:
        """The model's output and the loss's target for a batch of integer or float ``labels``."""
        raise NotImplementedError

    def compute(self, output: Tensor, target: Tensor, num_classes: int | None) -> dict[str, float]:
        """Metrics of the raw model ``output`` against ``target`` (CPU tensors)."""
        raise NotImplementedError

    def score(self, evaluation: Evaluation, data: "DataBundle") -> dict[str, float]:
        """Metrics of one evaluated split."""
        return self.compute(evaluation.output, evaluation.target, data.num_classes)

    def test_metrics(self, evaluation: Evaluation, data: "DataBundle", model: Any) -> dict[str, float]:
        """Metrics logged at the end of a run on the test split (by default those of :meth:`score`)."""
        return self.score(evaluation, data)

    def figures(
        self, test: Evaluation, data: "DataBundle", evaluate: Callable[[str], Evaluation], title: str
    ) -> Figures:
        """The task's own plots (learning curves are drawn for every task by the runner). ``data`` is the CPU copy
        of the bundle; ``evaluate(split)`` gives another split's evaluation when a plot needs it."""
        return {}

    def check_host(self, where: str, *tensors: Tensor) -> None:
        require_host(f"{self.name} {where}", *tensors)


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to the registry under ``task.name`` (a later registration of the same name replaces it)."""
    _TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    """The registered task ``name``; ``ValueError`` lists the valid ones."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"task {name!r} is unknown; valid: {sorted(_TASKS)}") from None


def available() -> list[str]:
    return list(_TASKS)


def has_direction(metric: str) -> bool:
    """Whether a lower (or higher) value of a logged metric is better: every metric but the diagnostics that
    describe training without scoring it (``grad_share/<group>``, :mod:`harness.grad_share`)."""
    from ..grad_share import PREFIX

    return not metric.startswith(PREFIX)


def lower_is_better(metric: str) -> bool:
    """Direction of a logged metric (``test/rmse``, ``val/accuracy``, ``train/loss``, ``time/train_s``), from the
    tasks that declare it; losses and times are lower-is-better; anything else higher-is-better. A metric without a
    direction (:func:`has_direction`) is ``False`` whatever its name: tables list it highest first."""
    if not has_direction(metric):
        return False
    prefix, _, name = metric.rpartition("/")
    for task in _TASKS.values():
        if name in task.metrics:
            return task.metrics[name]
    return name == "loss" or prefix in ("time", "train") or name.endswith("_s")
