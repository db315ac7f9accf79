"""SVRG: stochastic variance reduced gradient (Johnson & Zhang, NeurIPS 2013).

At the start of every epoch the training loop takes a snapshot x̃ ← θ and the mean full-data gradient
μ = ∇F(x̃). Each step on a batch B then follows the variance-reduced estimate

    v = ∇f_B(θ) − ∇f_B(x̃) + μ (+ weight_decay·θ)
    buf ← momentum·buf + v   (buf = v at the first step; no buffer when momentum = 0)
    θ ← θ − lr·buf

Both batch gradients see the same batch with the same augmentation and with BatchNorm running
statistics frozen (Defazio & Bottou 2019): the step gets ∇f_B(θ) in ``p.grad`` and ∇f_B(x̃) from the
closure, evaluated with x̃ copied into the parameters. Costs: two batch gradients per step plus one
full pass per snapshot.
"""

from __future__ import annotations

from typing import Callable

import torch

from .registry import register


class SVRG(torch.optim.Optimizer):
    """SVRG with optional heavy-ball momentum and coupled L2 weight decay.

    Protocol (see :mod:`optbench.optim`): ``take_snapshot(full_gradient)`` before the first step and at the
    start of each epoch; ``step(closure)`` with the batch gradient at θ in ``p.grad``. The snapshot x̃ and
    μ live in the per-parameter state (``"snapshot"``, ``"full_gradient"``), so a checkpoint resumes exactly.
    """

    needs_full_gradient = True
    #: the closure gives the batch gradient at the snapshot
    uses_closure = True
    #: the batch gradient at θ and the closure's batch gradient at the snapshot x̃
    gradient_evaluations_per_step = 2

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0):
        if not lr > 0.0:
            raise ValueError(f"invalid lr {lr!r}: lr must be > 0")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum {momentum!r}: momentum must lie in [0, 1)")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight_decay {weight_decay!r}: weight_decay must be >= 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def take_snapshot(self, full_gradient: Callable[[], object]) -> None:
        """Store x̃ ← θ and μ, the mean full-data gradient at x̃ that ``full_gradient()`` leaves in ``p.grad``."""
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["snapshot"] = p.detach().clone()
        # stale gradients must not leak into μ when full_gradient accumulates over batches
        self.zero_grad(set_to_none=True)
        full_gradient()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    # a parameter the loss does not reach has a zero gradient
                    mean = torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                    self.state[p]["full_gradient"] = mean

    def _params_with_grad(self, group: dict) -> list[torch.Tensor]:
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("SVRG does not support sparse gradients")
            if "snapshot" not in self.state[p]:
                raise RuntimeError(
                    "SVRG.step called before take_snapshot: the training loop must call "
                    "optimizer.take_snapshot(full_gradient) (optbench.protocol.take_snapshot_if_needed) first"
                )
        return params

    @torch.no_grad()
    def variance_reduced_gradient(self, closure: Callable[[], torch.Tensor] | None) -> list[torch.Tensor]:
        """v = ∇f_B(θ) − ∇f_B(x̃) + μ (+ weight_decay·θ) for the batch whose gradient at θ is in ``p.grad``.

        Returns one tensor per parameter that has a gradient, in ``param_groups`` order, and leaves the
        parameters and ``p.grad`` (the plain batch gradient at θ) as they were, so the variance of the
        estimate can be measured at a fixed iterate against the plain minibatch gradient.
        """
        if closure is None:
            raise RuntimeError("SVRG needs a closure that re-evaluates the batch gradient (optimizer.step(closure))")
        groups = [self._params_with_grad(group) for group in self.param_groups]
        params = [p for group_params in groups for p in group_params]
        if not params:
            return []
        batch_gradients = [p.grad for p in params]
        current = [p.detach().clone() for p in params]
        # hand the closure fresh .grad slots so that zeroing them cannot touch the gradients at θ
        for p in params:
            p.grad = None
        torch._foreach_copy_(params, [self.state[p]["snapshot"] for p in params])
        try:
            with torch.enable_grad():
                closure()
            snapshot_gradients = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
        finally:
            torch._foreach_copy_(params, current)
            for p, gradient in zip(params, batch_gradients):
                p.grad = gradient
        directions = torch._foreach_sub(batch_gradients, snapshot_gradients)
        torch._foreach_add_(directions, [self.state[p]["full_gradient"] for p in params])
        start = 0
        for group, group_params in zip(self.param_groups, groups):
            if group["weight_decay"] != 0.0 and group_params:
                stop = start + len(group_params)
                torch._foreach_add_(directions[start:stop], group_params, alpha=group["weight_decay"])
            start += len(group_params)
        return directions

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> None:
        """One SVRG step; ``closure`` re-evaluates the same batch and recomputes ``p.grad``."""
        directions = self.variance_reduced_gradient(closure)
        start = 0
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            group_directions = directions[start:start + len(params)]
            start += len(params)
            if group["momentum"] != 0.0:
                old_buffers, old_directions = [], []
                for p, direction in zip(params, group_directions):
                    state = self.state[p]
                    if "momentum_buffer" in state:
                        old_buffers.append(state["momentum_buffer"])
                        old_directions.append(direction)
                    else:
                        state["momentum_buffer"] = direction.clone()
                if old_buffers:
                    torch._foreach_mul_(old_buffers, group["momentum"])
                    torch._foreach_add_(old_buffers, old_directions)
                group_directions = [self.state[p]["momentum_buffer"] for p in params]
            torch._foreach_add_(params, group_directions, alpha=-group["lr"])
        return None


register(
    "svrg",
    SVRG,
    {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0},
    "SVRG, stochastic variance reduced gradient with a full-gradient snapshot per epoch (Johnson & Zhang 2013)",
)
