"""STORM: stochastic recursive momentum (Cutkosky & Orabona, "Momentum-Based Variance Reduction in
Non-Convex SGD", NeurIPS 2019), per coordinate as in the authors' official code.

With g_t = ∇f(θ_t, ξ_t) the gradient on the batch of step t and all operations elementwise:

    d_1 = g_1
    d_t = g_t + (1 − a_t)·(d_{t−1} − ∇f(θ_{t−1}, ξ_t)),   a_t = min(1, c·η_{t−1}²)      (t ≥ 2)
    η_t = k / (w + Σ_{i≤t} g_i²)^(1/3)
    θ_{t+1} = θ_t − η_t·d_t

∇f(θ_{t−1}, ξ_t) is the gradient at the previous iterate on the *current* batch: the step copies θ_{t−1}
into the parameters and calls the closure, which re-evaluates the same batch (BatchNorm running
statistics frozen). The order follows the paper's Algorithm 1 (a_{t+1} = c·η_t² uses the step size of
the move from θ_t to θ_{t+1}). There is no learning rate: k scales the step, w bounds it at the start and
c sets how fast the momentum forgets.

Deliberate deviations from the official code (google-research ``storm_optimizer``, TensorFlow), which
this class follows only in working per coordinate and in capping a at 1. Where the two differ, this class
is the paper's Algorithm 1, which report 003 implemented (its Algorithm 2):

* a_t: the official code computes η_t first (its sum already holds g_t²) and uses a_t = min(1, c·η_t²);
  the paper uses the previous step size, a_t = min(1, c·η_{t−1}²). This is the difference that matters:
  it changes every step where c·η² < 1 (with the official defaults k = 1, w = 10, c = 100 only once a
  coordinate's sum of squared gradients passes 990).
* d_1: the official code starts from d_0 = 0 and θ_0 = θ_1, so d_1 = a_1·g_1; the paper sets d_1 = g_1
  (equal whenever a_1 = 1).
* the official code also clips d_t to ±max(g_max, largest ‖g‖ seen) per tensor and starts the sum of
  squares at g_max³ (g_max = 0.01): a cap that rarely binds and a term of 1e-6 beside w.
"""

from __future__ import annotations

from typing import Callable

import torch

from .registry import register


class STORM(torch.optim.Optimizer):
    """STORM with per-coordinate adaptive step sizes; hyperparameters ``k``, ``w`` and ``c`` as in the paper.

    The state of each parameter holds the previous iterate θ_t (``"previous_iterate"``), the direction d_t
    (``"direction"``), the running elementwise sum of squared gradients (``"sum_squared_gradients"``) and the
    step count (``"step"``), so a checkpoint resumes exactly.
    """

    #: the closure gives the new batch's gradient at the previous iterate
    uses_closure = True

    def __init__(self, params, k: float = 0.1, w: float = 0.1, c: float = 100.0):
        if not k > 0.0:
            raise ValueError(f"invalid k {k!r}: k (the step-size scale) must be > 0")
        if not w > 0.0:
            raise ValueError(f"invalid w {w!r}: w (the initial step-size denominator) must be > 0")
        if not c >= 0.0:
            raise ValueError(f"invalid c {c!r}: c (the momentum scale) must be >= 0")
        super().__init__(params, {"k": k, "w": w, "c": c})

    @property
    def gradient_evaluations_per_step(self) -> int:
        """Per-example gradients the latest step computed per example of its batch.

        2 (the batch gradient at θ_t and the closure's at θ_{t−1}), except the very first step, which has no
        previous iterate to correct and computes only 1. Before any step: 2, the steady-state cost.
        """
        steps = [state["step"] for state in self.state.values() if "step" in state]
        return 1 if steps and max(steps) == 1 else 2

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> None:
        """One STORM step with g_t in ``p.grad``; ``closure`` re-evaluates the same batch (needed from step 2)."""
        continuing: list[torch.Tensor] = []  # parameters with a previous iterate: need ∇f(θ_{t−1}, ξ_t)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("STORM does not support sparse gradients")
                if "direction" in self.state[p]:
                    continuing.append(p)

        previous_gradients: dict[torch.Tensor, torch.Tensor] = {}
        if continuing:
            if closure is None:
                raise RuntimeError(
                    "STORM needs a closure that re-evaluates the batch gradient from its second step on "
                    "(optimizer.step(closure))"
                )
            batch_gradients = [p.grad for p in continuing]
            current = [p.detach().clone() for p in continuing]
            # fresh .grad slots, so that the closure's zeroing cannot touch the gradients at θ_t
            for p in continuing:
                p.grad = None
            torch._foreach_copy_(continuing, [self.state[p]["previous_iterate"] for p in continuing])
            try:
                with torch.enable_grad():
                    closure()
                for p in continuing:
                    previous_gradients[p] = torch.zeros_like(p) if p.grad is None else p.grad
            finally:
                torch._foreach_copy_(continuing, current)
                for p, gradient in zip(continuing, batch_gradients):
                    p.grad = gradient

        for group in self.param_groups:
            k, w, c = group["k"], group["w"], group["c"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            old = [p for p in params if p in previous_gradients]
            for p in params:
                state = self.state[p]
                if "direction" not in state:
                    state["step"] = 0
                    state["direction"] = p.grad.detach().clone()
                    state["sum_squared_gradients"] = torch.zeros_like(p)
                    state["previous_iterate"] = torch.zeros_like(p)
                state["step"] += 1
            if old:
                sums = [self.state[p]["sum_squared_gradients"] for p in old]
                directions = [self.state[p]["direction"] for p in old]
                # a_t = min(1, c·η_{t−1}²) with η_{t−1} = k/(w + Σ_{i<t} g_i²)^(1/3)
                momentum_weights = torch._foreach_add(sums, w)
                torch._foreach_pow_(momentum_weights, -2.0 / 3.0)
                torch._foreach_mul_(momentum_weights, c * k * k)
                torch._foreach_clamp_max_(momentum_weights, 1.0)
                keep = torch._foreach_neg(momentum_weights)
                torch._foreach_add_(keep, 1.0)
                torch._foreach_sub_(directions, [previous_gradients[p] for p in old])
                torch._foreach_mul_(directions, keep)
                torch._foreach_add_(directions, [p.grad for p in old])
            gradients = [p.grad for p in params]
            sums = [self.state[p]["sum_squared_gradients"] for p in params]
            torch._foreach_addcmul_(sums, gradients, gradients)
            step_sizes = torch._foreach_add(sums, w)
            torch._foreach_pow_(step_sizes, -1.0 / 3.0)
            torch._foreach_mul_(step_sizes, k)
            torch._foreach_copy_([self.state[p]["previous_iterate"] for p in params], params)
            torch._foreach_addcmul_(params, step_sizes, [self.state[p]["direction"] for p in params], value=-1.0)
        return None


register(
    "storm",
    STORM,
    {"k": 0.1, "w": 0.1, "c": 100.0},
    "STORM, stochastic recursive momentum with per-coordinate adaptive steps (Cutkosky & Orabona 2019); "
    "hyperparameters k, w, c, no lr",
)
