"""Adam with betas that decay exponentially with the epoch (report 004, Jain, Roy, Goyal & Goyal).

The report replaces β1 by β1·e^(−t) and β2 by β2·e^(−t), t "the epoch", so that later epochs weigh the
current gradient more. Here t is the epoch counted from 0, as ``on_epoch_start(epoch, num_epochs)`` gives
it: the first epoch is plain Adam, then β·e^(−1), β·e^(−2), ... (the same convention as Adam's own
β1,t = β1·λ^(t−1) suggestion, with λ = 1/e). Before any call of ``on_epoch_start`` the optimizer is Adam.

Update of one parameter θ with gradient g at step n (counted from 1), with the betas of the current epoch
b1 = β1·e^(−t), b2 = β2·e^(−t)::

    g ← g + weight_decay·θ                     (coupled L2, as torch.optim.Adam)
    m ← b1·m + (1 − b1)·g ;   v ← b2·v + (1 − b2)·g²
    P1 ← P1·b1 ;  P2 ← P2·b2                   (running products of the betas used so far, P = 1 at start)
    θ ← θ − lr/(1 − P1) · m / (sqrt(v)/sqrt(1 − P2) + eps)

Bias correction with time-varying betas: m is a weighted sum of past gradients whose weights add up to
1 − Π b1 (by induction: 1 − P_n = b_n·(1 − P_(n−1)) + (1 − b_n)), so dividing by 1 − P1 keeps m/(1 − P1)
an unbiased average, exactly as 1 − β1^n does for a constant β1 (to which it reduces).

Note: the authors' published code (github.com/Shubh-Goyal-07/DLProject, customAdam.py) decays the betas
with the optimizer *step* counter instead, caps them at 0.99, and bias-corrects with the current beta to the
power n; we follow the report's text (the epoch) and the exact bias correction above.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional

import torch

from ._moments import betas_as_tuple, check_group_hyperparameters, gather_moment_buffers
from .registry import register


class AdamScheduledBetas(torch.optim.Optimizer):
    """Adam whose betas are multiplied by e^(−epoch) (see the module docstring)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, dict(lr=lr, betas=betas_as_tuple(betas), eps=eps, weight_decay=weight_decay))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # validated before torch appends the group, so a bad group leaves the optimizer unchanged
        check_group_hyperparameters(self.defaults, param_group)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        # the epoch whose betas the group uses; kept in the group so that state_dict carries it
        group.setdefault("epoch", 0)

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Use the betas of ``epoch`` (counted from 0) from now on."""
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"invalid epoch {epoch!r}: epochs count from 0")
        for group in self.param_groups:
            group["epoch"] = int(epoch)

    @staticmethod
    def current_betas(group: dict[str, Any]) -> tuple[float, float]:
        """The betas in use for ``group``: its base betas times e^(−epoch)."""
        decay = math.exp(-group["epoch"])
        beta1, beta2 = group["betas"]
        return beta1 * decay, beta2 * decay

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = self.current_betas(group)
            # P1, P2 of the module docstring: the products of the betas each parameter has used so far
            buffers = gather_moment_buffers(
                self, group, optimizer_name="AdamScheduledBetas", second_moment_key="exp_avg_sq",
                running_products={"beta1_product": beta1, "beta2_product": beta2},
            )
            if not buffers.params:
                continue
            params, exp_avgs, exp_avg_sqs = buffers.params, buffers.exp_avgs, buffers.second_moments
            step_sizes = [-group["lr"] / (1.0 - state["beta1_product"]) for state in buffers.states]
            bias_correction2_roots = [math.sqrt(1.0 - state["beta2_product"]) for state in buffers.states]

            grads = buffers.grads
            if group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
            denominators = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denominators, bias_correction2_roots)
            torch._foreach_add_(denominators, group["eps"])
            torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        return loss


def _adam_scheduled_betas(params, lr, betas, eps, weight_decay):
    return AdamScheduledBetas(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


register(
    "adam_scheduled_betas",
    _adam_scheduled_betas,
    {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "Adam with betas scaled by e^(-epoch) (report 004), bias-corrected with the running product of betas",
)
