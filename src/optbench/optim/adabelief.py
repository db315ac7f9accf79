"""AdaBelief: Adam whose second moment is the belief in the gradient (Zhuang et al. 2020).

Zhuang, J., Tang, T., Ding, Y., Tatikonda, S., Dvornek, N., Papademetris, X., Duncan, J. S., "AdaBelief
Optimizer: Adapting Stepsizes by the Belief in Observed Gradients", NeurIPS 2020 (arXiv:2010.07468).
Update of one parameter θ with gradient g at step t (counted from 1)::

    g ← g + weight_decay·θ                  (coupled L2; decoupled: θ ← θ·(1 − lr·weight_decay) instead)
    m ← β1·m + (1 − β1)·g
    s ← β2·s + (1 − β2)·(g − m)² + eps      (eps inside s, as in the official code)
    ŝ ← max(ŝ, s)                           (only with amsgrad; ŝ = s otherwise)
    θ ← θ − lr/(1 − β1^t) · m / (sqrt(ŝ)/sqrt(1 − β2^t) + eps)

Weight decay is coupled (L2 added to the gradient) by default: the paper's CIFAR runs used
adabelief-pytorch 0.0.5, whose default was ``weight_decouple=False``, with weight decay 5e-4 (an L2-sized
value); the package's later releases (≥ 0.1) default to decoupled decay. ``decoupled_weight_decay=True``
gives the AdamW-style decay θ ← θ·(1 − lr·weight_decay) (the package's ``fixed_decay=False`` form).
Rectification (the package's ``rectify``) is not implemented. With ``amsgrad=True`` the update is that of
the package's releases ≥ 0.1 (eps joins s before the maximum is taken); release 0.0.5 took the maximum
of s without eps and then added eps to the stored maximum at every step, so its maximum creeps up by eps
per step (the two agree without amsgrad, the default).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ._moments import (
    add_into, betas_as_tuple, check_group_hyperparameters, gather_moment_buffers, sqrt_into, sub_into, work_buffers,
)
from .registry import register


class AdaBelief(torch.optim.Optimizer):
    """AdaBelief (see the module docstring for the update rule)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas_as_tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        super().__init__(params, defaults)
        # CPU scratch for the decayed gradients, the residuals g − m, then the denominators
        self._work_buffers: dict[torch.Tensor, torch.Tensor] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # validated before torch appends the group, so a bad group leaves the optimizer unchanged
        check_group_hyperparameters(self.defaults, param_group)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay, amsgrad = group["lr"], group["eps"], group["weight_decay"], group["amsgrad"]
            buffers = gather_moment_buffers(
                self, group, optimizer_name="AdaBelief", second_moment_key="exp_avg_var",
                max_second_moment_key="max_exp_avg_var" if amsgrad else None,
            )
            if not buffers.params:
                continue
            params, exp_avgs, exp_avg_vars = buffers.params, buffers.exp_avgs, buffers.second_moments
            # m/(sqrt(ŝ)/c + eps) = c·m/(sqrt(ŝ) + c·eps) with c = sqrt(1 − β2^t): c goes into the step size
            # and eps, which saves the pass dividing the denominators by c
            bias_correction2_roots = [math.sqrt(1.0 - beta2**step) for step in buffers.steps]
            step_sizes = [
                -lr * root / (1.0 - beta1**step) for step, root in zip(buffers.steps, bias_correction2_roots)
            ]
            denominator_eps = [eps * root for root in bias_correction2_roots]

            scratch = work_buffers(self._work_buffers, params)
            grads = buffers.grads
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    torch._foreach_mul_(params, 1.0 - lr * weight_decay)
                else:
                    # into scratch: p.grad itself stays the loss gradient
                    grads = add_into(scratch, grads, params, weight_decay)
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            residuals = sub_into(scratch, grads, exp_avgs)
            torch._foreach_mul_(exp_avg_vars, beta2)
            torch._foreach_addcmul_(exp_avg_vars, residuals, residuals, value=1.0 - beta2)
            torch._foreach_add_(exp_avg_vars, eps)
            if amsgrad:
                torch._foreach_maximum_(buffers.max_second_moments, exp_avg_vars)
                beliefs = buffers.max_second_moments
            else:
                beliefs = exp_avg_vars
            # the residuals are spent: their scratch can hold the denominators
            denominators = sqrt_into(scratch, beliefs)
            torch._foreach_add_(denominators, denominator_eps)
            torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        return loss


def _adabelief(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay):
    return AdaBelief(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                     decoupled_weight_decay=decoupled_weight_decay)


register(
    "adabelief",
    _adabelief,
    {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
     "decoupled_weight_decay": False},
    "AdaBelief (Zhuang et al. 2020): Adam with the EMA of (g − m)² as second moment; coupled L2 by default",
)
