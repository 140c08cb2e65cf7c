"""GAN losses on discriminator logits (Goodfellow et al. 2014; hinge: Lim & Ye 2017, Miyato et al. 2018).

Two registered losses, ``kind`` in ``minimax | non_saturating | hinge``:
- ``gan_discriminator(logits, is_real)``: the discriminator's loss on a batch of real (target 1) and generated
  (target 0) samples;
- ``gan_generator(logits)``: the generator's loss on the discriminator's logits for generated samples (no target).

``mean`` averages over the samples given. GAN code usually writes the discriminator's loss as ``mean over real +
mean over generated``; :func:`discriminator_loss` and :func:`generator_loss` keep that two-argument form. No task of
the harness trains a GAN: these serve the ``adversarial`` task only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._core import as_float, check_reduction, check_same_shape, one_of, reduce, register

KINDS = ("minimax", "non_saturating", "hinge")
_KIND = one_of(*KINDS)


@register("gan_discriminator", tasks=("adversarial",), input="logits", target="binary", constraints={"kind": _KIND})
def gan_discriminator(
    input: Tensor, target: Tensor, *, kind: str = "non_saturating", weight: Tensor | None = None, reduction: str = "mean"
) -> Tensor:
    """Discriminator loss per sample: ``-log D(x)`` for real samples (``target`` 1) and ``-log(1 - D(x))`` for
    generated ones (``target`` 0), i.e. ``softplus(-input)`` and ``softplus(input)``; ``hinge`` uses ``relu(1 - input)``
    and ``relu(1 + input)``.

    ``minimax`` and ``non_saturating`` differ only for the generator, so they give the same discriminator loss: the
    binary cross-entropy with logits, which also takes soft targets (one-sided label smoothing, Salimans et al. 2016:
    0.9 for real samples).
    """
    check_same_shape("gan_discriminator", input, target)
    input = as_float(input)
    target = as_float(target).to(input.dtype)
    if kind == "hinge":
        return reduce(F.relu(1.0 - (2.0 * target - 1.0) * input), reduction, weight)
    if weight is None:
        return F.binary_cross_entropy_with_logits(input, target, reduction=check_reduction(reduction))
    return reduce(F.binary_cross_entropy_with_logits(input, target, reduction="none"), reduction, weight)


@register("gan_generator", tasks=("adversarial",), input="logits", target="none", constraints={"kind": _KIND})
def gan_generator(
    input: Tensor,
    target: None = None,
    *,
    kind: str = "non_saturating",
    weight: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Generator loss per generated sample, from the discriminator's logit ``input``: ``minimax`` minimises
    ``log(1 - D(G(z)))`` = ``-softplus(input)`` (its gradient vanishes while D wins), ``non_saturating`` minimises
    ``-log D(G(z))`` = ``softplus(-input)`` (Goodfellow et al.'s practical choice), ``hinge`` is ``-input``.

    There is no target: pass ``None`` (or leave it out).
    """
    if target is not None:
        raise ValueError("loss 'gan_generator': target must be None (the generator's loss has no target)")
    input = as_float(input)
    if kind == "hinge":
        loss = -input
    elif kind == "minimax":
        loss = -F.softplus(input)
    else:
        loss = F.softplus(-input)
    return reduce(loss, reduction, weight)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """``mean`` of :func:`gan_discriminator` over the real logits plus its ``mean`` over the generated ones: the
    form most GAN code writes (e.g. ``softplus(-real).mean() + softplus(fake).mean()``)."""
    real = gan_discriminator(real_logits, torch.ones_like(real_logits), kind=kind)
    return real + gan_discriminator(fake_logits, torch.zeros_like(fake_logits), kind=kind)


def generator_loss(fake_logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """``mean`` of :func:`gan_generator` over the generated samples' logits."""
    return gan_generator(fake_logits, kind=kind)
