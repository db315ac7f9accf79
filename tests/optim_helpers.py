"""Tiny models, problems and helpers shared by the optimizer tests (tests/test_optim_*.py).

Every problem is float64 and seeded, so trajectories can be compared to 1e-12. Each test module keeps its
own reference equations; only the scaffolding around them lives here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from optbench.protocol import optimizer_step

DTYPE = torch.float64  # trajectories are compared in double precision


# ---------------------------------------------------------------- a small regression network
def tiny_model(seed: int = 0, hidden: int = 5) -> nn.Module:
    """Linear(4, hidden) → tanh → Linear(hidden, 2), initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 2)).to(DTYPE)


def regression_batches(count: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of 8 random inputs (4 features) and targets (2) for :func:`tiny_model`."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 4, generator=generator, dtype=DTYPE), torch.randn(8, 2, generator=generator, dtype=DTYPE))
        for _ in range(count)
    ]


def train(model: nn.Module, optimizer, data, before_step: Callable[[int], None] | None = None,
          after_step: Callable[[], None] | None = None) -> None:
    """One protocol step per batch on the mean squared error; ``before_step(index)`` and ``after_step()``
    run around each (to change settings, or step a scheduler)."""
    for index, (inputs, targets) in enumerate(data):
        if before_step is not None:
            before_step(index)
        optimizer_step(optimizer, lambda: ((model(inputs) - targets) ** 2).mean(), model)
        if after_step is not None:
            after_step()


# ---------------------------------------------------------------- a small convolutional classifier
class ConvNet(nn.Module):
    """A 3×3 convolution (AdaHessian averages its diagonal spatially) and a linear layer (elementwise)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.linear = nn.Linear(3 * 3 * 3, 2)

    def forward(self, inputs):
        return self.linear(torch.tanh(self.conv(inputs)).flatten(1))


def conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ConvNet().to(DTYPE)


def image_batches(count: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of 6 random 2×5×5 images with labels in {0, 1} for :func:`conv_net`."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(6, 2, 5, 5, generator=generator, dtype=DTYPE), torch.randint(0, 2, (6,), generator=generator))
        for _ in range(count)
    ]


def classification_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(inputs), targets)


def train_classifier(model: nn.Module, optimizer, data) -> None:
    for inputs, targets in data:
        optimizer_step(optimizer, lambda: classification_loss(model, inputs, targets), model)


def count_hessian_vector_products(monkeypatch) -> list:
    """A list that gets one entry per ``torch.autograd.grad`` call (a Hessian-vector product) from now on."""
    calls = []
    grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(1)
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    return calls


# ---------------------------------------------------------------- a smooth loss of one parameter vector
def softplus_problem(seed: int = 0, dimension: int = 6, num_examples: int = 30):
    """A starting point θ0 and data (inputs, targets) for :func:`softplus_loss`."""
    generator = torch.Generator().manual_seed(seed)
    data = (torch.randn(num_examples, dimension, generator=generator, dtype=DTYPE),
            torch.randn(num_examples, generator=generator, dtype=DTYPE))
    return torch.randn(dimension, generator=generator, dtype=DTYPE), data


def softplus_loss(theta: torch.Tensor, data, quartic_weight: float = 0.05) -> torch.Tensor:
    """mean softplus(Xθ − y) + w·Σθ⁴: smooth and not quadratic, so gradients change along a run."""
    inputs, targets = data
    return torch.nn.functional.softplus(inputs @ theta - targets).mean() + quartic_weight * (theta**4).sum()


# ---------------------------------------------------------------- least squares with a linear model
@dataclass(frozen=True)
class LeastSquares:
    """Inputs A (n×d) and targets b = A·x + noise·N(0, 1); f_i(θ) = ½(a_iᵀθ − b_i)² for a linear model."""

    num_examples: int
    dimension: int
    noise: float

    def data(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(self.num_examples, self.dimension, generator=generator, dtype=DTYPE)
        truth = torch.randn(self.dimension, generator=generator, dtype=DTYPE)
        targets = inputs @ truth + self.noise * torch.randn(self.num_examples, generator=generator, dtype=DTYPE)
        return inputs, targets

    def linear_model(self, seed: int = 1, bias: bool = True) -> nn.Linear:
        torch.manual_seed(seed)
        return nn.Linear(self.dimension, 1, bias=bias).to(DTYPE)


def batch_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((model(inputs).squeeze(1) - targets) ** 2).mean()


def plain_gradient(design: torch.Tensor, targets: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """∇ of the mean of ½(xᵀθ − y)² over the rows, written out: Xᵀ(Xθ − y)/m."""
    return design.T @ (design @ theta - targets) / design.shape[0]


# ---------------------------------------------------------------- runs, comparisons, checkpoints
def run_with_gradients(optimizer, params: list[torch.Tensor], grads_per_step) -> list[list[torch.Tensor]]:
    """Set each step's given gradients (one list per step, one tensor per parameter) and step; the
    parameters after every step."""
    trajectory = []
    for step_grads in grads_per_step:
        for param, grad in zip(params, step_grads):
            param.grad = grad.clone()
        optimizer.step()
        trajectory.append([param.detach().clone() for param in params])
    return trajectory


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def assert_same_parameters(first: nn.Module, second: nn.Module, rtol=1e-12, atol=1e-14) -> None:
    for a, b in zip(first.parameters(), second.parameters()):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def round_trip(state_dict: dict) -> dict:
    """Through bytes and ``torch.load(weights_only=True)``, as :mod:`optbench.checkpoints` loads a
    checkpoint, so nothing is shared with the live optimizer and the state must be plain data."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)
