"""A loss registered into the ``losses`` registry from a user's package, then used by name."""

import losses


@losses.register("pseudo_l1", tasks=("regression",), input="values", target="float", constraints={"eps": losses.positive()})
def pseudo_l1(input, target, *, eps=0.1, reduction="mean"):
    """Smooth L1 surrogate ``sqrt(r**2 + eps**2) - eps``."""
    r = input - target
    return losses.reduce((r.square() + eps**2).sqrt() - eps, reduction)
