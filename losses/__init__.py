"""Loss functions for comparison work: a functional form and an ``nn.Module`` per loss, behind a registry.

>>> import losses
>>> criterion = losses.get("huber", delta=1.0)
>>> losses.available("regression")[:3]
['barron', 'cauchy', 'huber']
"""

from . import adversarial, binary, multiclass, regression, segmentation  # noqa: F401  (importing registers the losses)
from ._core import TASKS, Loss, LossSpec, available, get, spec, specs

__all__ = ["TASKS", "Loss", "LossSpec", "available", "get", "spec", "specs"]
