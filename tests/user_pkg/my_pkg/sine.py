"""A dataset a user registers from their own package (the README's "Add a dataset to the harness")."""

import torch
from harness.data import DataBundle, Split, register_dataset

@register_dataset("sine", task="regression")
def make_sine(cfg, seed):
    """y = sin(x) + noise, x uniform on [-3, 3]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(cfg.n, 1, generator=g) * 6 - 3
    y = torch.sin(x[:, 0]) + cfg.noise * torch.randn(cfg.n, generator=g)
    a, b = int(0.6 * cfg.n), int(0.8 * cfg.n)
    return DataBundle("sine", "regression", Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]),
                      input_shape=(1,), source=f"generated from seed {seed}")
