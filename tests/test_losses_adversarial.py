"""GAN losses: identities with torch's BCE, the two-argument forms, the minimax generator's vanishing gradient, and
a small GAN that learns a Gaussian with them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import losses
from losses.adversarial import KINDS, discriminator_loss, gan_discriminator, gan_generator, generator_loss

LOGITS = torch.tensor([[2.0], [-1.0], [-3.0], [0.5]])
IS_REAL = torch.tensor([[1.0], [1.0], [0.0], [0.0]])


@pytest.mark.parametrize("kind", ["minimax", "non_saturating"])
def test_discriminator_loss_is_bce_with_logits(kind):
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(
            gan_discriminator(LOGITS, IS_REAL, kind=kind, reduction=reduction),
            F.binary_cross_entropy_with_logits(LOGITS, IS_REAL, reduction=reduction),
        )
    smoothed = IS_REAL * 0.9  # one-sided label smoothing (Salimans et al. 2016)
    torch.testing.assert_close(
        gan_discriminator(LOGITS, smoothed, kind=kind), F.binary_cross_entropy_with_logits(LOGITS, smoothed)
    )


def test_hinge_by_hand():
    # real: relu(1 - 2) = 0, relu(1 + 1) = 2; generated: relu(1 - 3) = 0, relu(1 + 0.5) = 1.5
    assert gan_discriminator(LOGITS, IS_REAL, kind="hinge", reduction="none").flatten().tolist() == [0.0, 2.0, 0.0, 1.5]
    assert gan_generator(LOGITS[2:], kind="hinge").item() == pytest.approx(1.25)  # -(-3 + 0.5) / 2


@pytest.mark.parametrize("kind", KINDS)
def test_two_argument_forms_match_the_registered_losses(kind):
    real, fake = LOGITS[:2], LOGITS[2:]
    # equal halves: mean(real) + mean(generated) is twice the mean over the whole batch
    torch.testing.assert_close(discriminator_loss(real, fake, kind), 2 * gan_discriminator(LOGITS, IS_REAL, kind=kind))
    torch.testing.assert_close(generator_loss(fake, kind), losses.get("gan_generator", kind=kind)(fake))


def test_minimax_generator_gradient_vanishes_where_non_saturating_does_not():
    """Goodfellow et al. (2014), section 3: early on D rejects generated samples confidently (logit -10)."""
    grads = {}
    for kind in ("minimax", "non_saturating"):
        logit = torch.tensor([-10.0], requires_grad=True)
        gan_generator(logit, kind=kind).backward()
        grads[kind] = logit.grad.item()
    assert abs(grads["minimax"]) < 1e-4  # -sigmoid(-10)
    assert grads["non_saturating"] == pytest.approx(-1.0, abs=1e-4)  # -sigmoid(10)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"kind must be one of \['minimax', 'non_saturating', 'hinge'\]"):
        losses.get("gan_discriminator", kind="wgan")
    with pytest.raises(ValueError, match="target must be None"):
        gan_generator(LOGITS, IS_REAL)
    with pytest.raises(ValueError, match="same shape"):
        gan_discriminator(LOGITS, IS_REAL.flatten())
    assert losses.available("adversarial") == ["gan_discriminator", "gan_generator"]


def train_gan(kind: str, steps: int = 1500) -> tuple[float, float]:
    """An affine generator against an MLP discriminator on N(3, 0.5^2); mean and sd of 10k generated samples."""
    torch.manual_seed(0)
    gen = torch.nn.Linear(1, 1)
    disc = torch.nn.Sequential(
        torch.nn.Linear(1, 32), torch.nn.LeakyReLU(0.2), torch.nn.Linear(32, 32), torch.nn.LeakyReLU(0.2), torch.nn.Linear(32, 1)
    )
    d_loss, g_loss = losses.get("gan_discriminator", kind=kind), losses.get("gan_generator", kind=kind)
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-3, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(0)
    is_real = torch.cat([torch.ones(256, 1), torch.zeros(256, 1)])
    for _ in range(steps):
        real = 3.0 + 0.5 * torch.randn(256, 1, generator=g)
        fake = gen(torch.randn(256, 1, generator=g))
        opt_d.zero_grad()
        d_loss(disc(torch.cat([real, fake.detach()])), is_real).backward()
        opt_d.step()
        opt_g.zero_grad()
        g_loss(disc(gen(torch.randn(256, 1, generator=g)))).backward()
        opt_g.step()
    with torch.no_grad():
        samples = gen(torch.randn(10_000, 1, generator=g))
    return samples.mean().item(), samples.std().item()


@pytest.mark.parametrize("kind", ["non_saturating", "hinge"])
def test_a_small_gan_learns_a_gaussian(kind):
    mean, sd = train_gan(kind)  # the generator starts near N(0, 1)
    assert mean == pytest.approx(3.0, abs=0.3) and sd == pytest.approx(0.5, abs=0.1)
