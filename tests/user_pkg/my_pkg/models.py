"""A model a user brings: called with the config's keys plus input_shape and num_outputs."""

import math

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, input_shape: tuple, num_outputs: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.Tanh(), nn.Linear(hidden, num_outputs))

    def forward(self, x):
        return self.net(x)


class WrongWidth(TinyNet):
    def __init__(self, input_shape: tuple, num_outputs: int) -> None:
        super().__init__(input_shape, num_outputs + 2)
