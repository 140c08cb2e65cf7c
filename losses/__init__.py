"""Loss functions for comparison work: a functional form and an ``nn.Module`` per loss, behind a registry.

>>> import losses
>>> criterion = losses.get("huber", delta=1.0)
>>> losses.available("regression")[:3]
['barron', 'cauchy', 'huber']

A loss of your own joins the registry with the same decorator the built-ins use (then ``losses.get("my_l1")``, and
``loss=my_l1`` in the harness once your module is imported, e.g. ``imports=[my_pkg.losses]``)::

    @losses.register("my_l1", tasks=("regression",), input="values", target="float",
                     constraints={"scale": losses.positive()})
    def my_l1(input, target, *, scale=1.0, reduction="mean"):
        return losses.reduce(scale * (input - target).abs(), reduction)
"""

from . import adversarial, binary, long_tail, lovasz, multiclass, noisy_labels, regression, segmentation  # noqa: F401  (importing registers the losses)
from ._core import (
    INPUTS, TARGETS, TASKS, Constraint, Loss, LossSpec, available, get, in_range, non_negative, one_of, positive, reduce,
    register, spec, specs,
)

__all__ = [
    "INPUTS", "TARGETS", "TASKS", "Constraint", "Loss", "LossSpec", "available", "get", "in_range", "non_negative",
    "one_of", "positive", "reduce", "register", "spec", "specs",
]
