"""GAN losses on discriminator logits (Goodfellow et al. 2014; hinge: Lim & Ye 2017, Miyato et al. 2018).

They take logits on real and generated samples rather than ``(input, target)``, so they are plain functions, not
registry entries: no task of the harness trains a GAN.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

KINDS = ("minimax", "non_saturating", "hinge")


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """Discriminator loss, mean over samples.

    ``minimax`` and ``non_saturating`` share the discriminator's BCE ``-log D(x) - log(1 - D(G(z)))`` =
    ``softplus(-real) + softplus(fake)``; ``hinge`` is ``relu(1 - real) + relu(1 + fake)``.
    """
    _check(kind)
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """Generator loss, mean over samples: ``minimax`` minimises ``log(1 - D(G(z)))`` = ``-softplus(fake)``
    (saturates when D wins), ``non_saturating`` minimises ``-log D(G(z))`` = ``softplus(-fake)``, ``hinge`` is
    ``-fake``."""
    _check(kind)
    if kind == "hinge":
        return -fake_logits.mean()
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()
