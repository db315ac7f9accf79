"""Every registered optimizer minimizes a convex quadratic and the 2-D Rosenbrock function.

The optimizers are driven only through :mod:`optbench.protocol`, as the training loop drives them:
``call_epoch_hook`` and ``take_snapshot_if_needed`` at the start of each "epoch" of a fixed number of
steps, then ``optimizer_step`` for every step. The names come from ``optbench.optim.available()`` at
collection time, so an optimizer registered later is tested too; it needs a deliberate entry in
``SETTINGS`` (its hyperparameters for each problem), and the test fails until it has one.
"""

from __future__ import annotations

import math

import pytest
import torch

from optbench.optim import available, default_hyperparameters, make_optimizer
from optbench.protocol import call_epoch_hook, optimizer_step, take_snapshot_if_needed

DTYPE = torch.float64

# Hessian-based optimizers ask the loop for backward(create_graph=True), which warns about a reference cycle
pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")

#: hyperparameters per optimizer and problem; the others keep their registered defaults, except
#: weight_decay, which is 0 unless given here (weight decay moves the minimizer away from the known one)
SETTINGS: dict[str, dict[str, dict]] = {
    "sgd": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.01}},
    "adam": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.1}},
    "amsgrad": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.1}},
    "adamw": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.1}},
    "nadam": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.02}},
    # β2 = 0.99: with 0.999 the rectification keeps the steps small for longer than these short runs
    "radam": {"quadratic": {"lr": 0.1, "betas": (0.9, 0.99)}, "rosenbrock": {"lr": 0.02, "betas": (0.9, 0.99)}},
    "adagrad": {"quadratic": {"lr": 0.5}, "rosenbrock": {"lr": 0.5}},
    "rmsprop": {"quadratic": {"lr": 0.03}, "rosenbrock": {"lr": 0.01}},
    "padam": {"quadratic": {"lr": 0.1}, "rosenbrock": {"lr": 0.1}},
    "adabelief": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.1}},
    "lookahead": {"quadratic": {"lr": 0.1}, "rosenbrock": {"lr": 0.2}},
    # after the first epoch its betas are nearly 0 (sign-like steps of size lr): lr bounds the final error
    "adam_scheduled_betas": {"quadratic": {"lr": 0.01}, "rosenbrock": {"lr": 0.01}},
    "svrg": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.01, "momentum": 0.9}},
    "storm": {"quadratic": {"k": 0.2}, "rosenbrock": {"k": 0.2}},
    "adahessian": {"quadratic": {"lr": 0.2}, "rosenbrock": {"lr": 1.0}},
    # heavy-ball momentum 0.95 (the default) cannot shrink f faster than about 0.95^t: 0.9 for 200 steps
    "adasgd": {"quadratic": {"lr": 0.05, "momentum": 0.9}, "rosenbrock": {"lr": 0.01}},
    "atmo": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.01}},
    "padam_sgd": {"quadratic": {"lr": 0.05}, "rosenbrock": {"lr": 0.01}},
}


def settings_for(name: str, problem: str) -> dict:
    if name not in SETTINGS:
        pytest.fail(
            f"no convergence setting for optimizer {name!r}: add its hyperparameters for the quadratic and "
            f"the Rosenbrock problems to SETTINGS in {__file__}"
        )
    hyperparameters = dict(SETTINGS[name][problem])
    if "weight_decay" in default_hyperparameters(name):
        hyperparameters.setdefault("weight_decay", 0.0)
    return hyperparameters


def minimize(name, hyperparameters, x, loss_of_batch, draw_batch, num_epochs, steps_per_epoch):
    """Run the protocol on parameter ``x``; ``loss_of_batch(None)`` is the full-data loss."""
    torch.manual_seed(0)  # for optimizers that draw random numbers (Hutchinson probes) from the global RNG
    optimizer = make_optimizer(name, [x], **hyperparameters)

    def full_gradient():
        x.grad = None
        loss_of_batch(None).backward()

    for epoch in range(num_epochs):
        call_epoch_hook(optimizer, epoch, num_epochs)
        take_snapshot_if_needed(optimizer, full_gradient)
        for _ in range(steps_per_epoch):
            batch = draw_batch()
            optimizer_step(optimizer, lambda: loss_of_batch(batch))
    with torch.no_grad():
        return loss_of_batch(None).item()


class LeastSquares:
    """f(x) = (1/n)·Σ ½(aᵢ·x − yᵢ)² with yᵢ = aᵢ·x*, i.e. ½(x − x*)ᵀA(x − x*) = ½xᵀAx − bᵀx + const with
    A = (1/n)·Σ aᵢaᵢᵀ (eigenvalues 0.42 to 1.30 here) and b = A·x*. Minimum 0 at x*; every example is
    minimized there too, so minibatch noise vanishes at the solution and constant steps can converge."""

    def __init__(self, dimension=5, examples=40, batch_size=20, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(examples, dimension, generator=generator, dtype=DTYPE)
        self.solution = torch.randn(dimension, generator=generator, dtype=DTYPE)
        self.targets = self.inputs @ self.solution
        self.start = self.solution + torch.randn(dimension, generator=generator, dtype=DTYPE)
        self.batch_size = batch_size
        self.sampler = torch.Generator().manual_seed(seed + 1)

    def loss(self, x, batch):
        rows = slice(None) if batch is None else batch
        residuals = self.inputs[rows] @ x - self.targets[rows]
        return 0.5 * (residuals * residuals).mean()

    def draw_batch(self):
        return torch.randint(0, len(self.targets), (self.batch_size,), generator=self.sampler)


def test_least_squares_is_well_conditioned_with_minimum_zero():
    problem = LeastSquares()
    eigenvalues = torch.linalg.eigvalsh(problem.inputs.T @ problem.inputs / len(problem.targets))
    assert eigenvalues.max() / eigenvalues.min() < 4
    assert problem.loss(problem.solution, None).item() < 1e-28
    assert problem.loss(problem.start, None).item() > 0.5


@pytest.mark.parametrize("name", available())
def test_minimizes_a_convex_quadratic(name):
    """200 minibatch steps (4 epochs of 50): f(x) − f* must fall below 1e-3 of its starting value."""
    hyperparameters = settings_for(name, "quadratic")
    problem = LeastSquares()
    x = problem.start.clone().requires_grad_()
    initial = problem.loss(problem.start, None).item()
    final = minimize(name, hyperparameters, x, lambda batch: problem.loss(x, batch), problem.draw_batch,
                     num_epochs=4, steps_per_epoch=50)
    assert math.isfinite(final) and final < 1e-3 * initial, (
        f"{name} with {hyperparameters}: suboptimality {final:.3e} from {initial:.3e} (needs < 1e-3 of it)"
    )


def rosenbrock(x):
    """(1 − x₁)² + 10·(x₂ − x₁²)²: the banana valley of Rosenbrock's function with b = 10 instead of 100,
    so that a few hundred steps suffice; minimum 0 at (1, 1)."""
    first, second = x.unbind()
    return (1 - first).square() + 10 * (second - first.square()).square()


def test_rosenbrock_minimum():
    assert rosenbrock(torch.tensor([1.0, 1.0], dtype=DTYPE)).item() == 0.0


@pytest.mark.parametrize("name", available())
def test_minimizes_rosenbrock(name):
    """600 deterministic steps (3 epochs of 200) from (−1.2, 1), where f = 6.78, round the bend of the
    valley to f < 1e-2 (along the valley floor f ≈ (1 − x₁)², so x₁ > 0.9)."""
    hyperparameters = settings_for(name, "rosenbrock")
    x = torch.tensor([-1.2, 1.0], dtype=DTYPE, requires_grad=True)
    final = minimize(name, hyperparameters, x, lambda batch: rosenbrock(x), lambda: None,
                     num_epochs=3, steps_per_epoch=200)
    assert math.isfinite(final) and final < 1e-2, (
        f"{name} with {hyperparameters}: f = {final:.3e} at {x.detach().tolist()} after 600 steps (needs < 1e-2)"
    )
