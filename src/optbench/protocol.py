"""One optimization step under the protocol of :mod:`optbench.optim` (closures, Hessians, snapshots).

The training loop and the optimizer tests drive every optimizer through these two functions, so an
optimizer that declares ``create_graph``, ``needs_full_gradient`` or ``gradient_evaluations_per_step``
behaves the same in a unit test as in a real run.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

import torch
from torch import nn


def gradient_evaluations_per_step(optimizer: torch.optim.Optimizer) -> int:
    """Per-example gradients one step computes per example of its batch (1 for plain first-order methods)."""
    return int(getattr(optimizer, "gradient_evaluations_per_step", 1))


def needs_full_gradient(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer takes a full-data gradient snapshot at the start of each epoch (SVRG)."""
    return bool(getattr(optimizer, "needs_full_gradient", False))


@contextlib.contextmanager
def frozen_batchnorm_statistics(model: nn.Module | None) -> Iterator[None]:
    """Run extra forward passes (snapshot and re-evaluation) without moving BatchNorm running statistics."""
    if model is None:
        yield
        return
    saved = [
        (module, {name: buffer.clone() for name, buffer in module.named_buffers(recurse=False) if buffer is not None})
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for name, value in buffers.items():
                    getattr(module, name).copy_(value)


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    compute_loss: Callable[[], torch.Tensor],
    model: nn.Module | None = None,
) -> torch.Tensor:
    """Take one step: backward on ``compute_loss()``, then ``optimizer.step(closure)``; return the loss.

    ``compute_loss`` evaluates the current batch (already augmented, so every evaluation sees the same
    examples) at the parameters' current values. The closure handed to ``step`` re-evaluates it with
    ``model``'s BatchNorm running statistics frozen.
    """
    create_graph = bool(getattr(optimizer, "create_graph", False))

    def evaluate() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = compute_loss()
        if not create_graph:
            loss.backward()
            return loss
        with warnings.catch_warnings():
            # torch warns of the parameter ↔ gradient reference cycle of create_graph=True; the step below
            # breaks it by setting every gradient to None, as the warning asks
            warnings.filterwarnings("ignore", category=UserWarning, message=r"Using backward\(\) with create_graph")
            loss.backward(create_graph=True)
        return loss

    def closure() -> torch.Tensor:
        with frozen_batchnorm_statistics(model):
            return evaluate()

    loss = evaluate()
    # torch.optim's optimizers evaluate any closure they are given, so only those that ask get one
    if getattr(optimizer, "uses_closure", False):
        optimizer.step(closure)
    else:
        optimizer.step()
    if create_graph:
        # the graph kept for Hessian-vector products must not outlive the step
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def take_snapshot_if_needed(
    optimizer: torch.optim.Optimizer,
    full_gradient: Callable[[], None],
) -> bool:
    """Give an optimizer that needs one (SVRG) its full-data gradient snapshot; return whether it took one.

    ``full_gradient()`` must leave the mean training-set gradient at the current parameters in ``p.grad``.
    """
    if not needs_full_gradient(optimizer):
        return False
    optimizer.take_snapshot(full_gradient)
    return True


def call_epoch_hook(optimizer: torch.optim.Optimizer, epoch: int, num_epochs: int) -> None:
    """Let per-epoch schedules (dynamic mixing weights, scheduled betas, p schedules) update themselves."""
    hook = getattr(optimizer, "on_epoch_start", None)
    if hook is not None:
        hook(epoch, num_epochs)
