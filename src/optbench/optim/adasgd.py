"""AdaSGD: AdaHessian mixed with SGD momentum the way ATMO mixes Adam (report 002: Nussbaumer,
Poulain--Auzéau & Seiler, "Analysis of the efficiency of hybrid methods to optimize the training of deep
neural networks", EPFL CS-439, Algorithm 4).

    d_S = buf ← μ·buf + (g + wd·θ)                                       (SGD momentum, coupled L2)
    m, v, D as in AdaHessian (:mod:`.adahessian`) ;  η_A = lr/(1−β1^t)
    d_A = m / ((sqrt(v)/sqrt(1−β2^t))^k + eps) + (1−β1^t)·wd·θ          (so η_A·d_A is AdaHessian's step)
    θ ← θ − (λ_S·lr + λ_A·η_A) · (λ_S·d_S + λ_A·d_A)

λ_A = 1 is AdaHessian and λ_S = 1 SGD momentum. Dynamic weights by default (λ_A = 1 − e/E, see
:mod:`.atmo`); once λ_A = 0 the Hessian is no longer estimated and ``create_graph`` turns False. The loop
protocol (``create_graph``, ``gradient_evaluations_per_step``, ``hessian_every``, ``seed``) is AdaHessian's.
"""

from __future__ import annotations

import torch

from .adahessian import HutchinsonDiagonal, adahessian_moments, check_hessian_hyperparameters
from ._moments import betas_as_tuple
from .atmo import AdaptiveDirection, MixedOptimizer
from .registry import register


class AdaSGD(HutchinsonDiagonal, MixedOptimizer):
    """AdaSGD (report 002): ATMO's mixing of SGD momentum with AdaHessian; see the module doc."""

    def __init__(
        self,
        params,
        lr: float = 0.1,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 5e-4,
        hessian_power: float = 1.0,
        hessian_every: int = 1,
        dynamic_weights: bool = True,
        dynamic_epochs: int | None = None,
        sgd_weight: float = 0.5,
        adam_weight: float = 0.5,
        seed: int | None = None,
    ):
        check_hessian_hyperparameters(hessian_power, hessian_every, seed)
        defaults = dict(
            lr=lr, momentum=momentum, betas=betas_as_tuple(betas), eps=eps,
            weight_decay=weight_decay, hessian_power=hessian_power, sgd_weight=sgd_weight,
            adam_weight=adam_weight, dynamic_weights=dynamic_weights, dynamic_epochs=dynamic_epochs,
        )
        super().__init__(params, defaults)
        self.init_hutchinson(hessian_every, seed)

    def hessian_needed(self) -> bool:
        return any(group["adam_weight"] != 0 for group in self.param_groups)

    def prepare_step(self) -> None:
        self.update_hessian_diagonals()

    def init_state(self, group, param, state):
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_hessian_diag_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def adaptive_direction(self, group, params, grads, decayed_grads, states, step, scratch):
        exp_avgs = [state["exp_avg"] for state in states]
        denominators, scale = adahessian_moments(
            exp_avgs,
            [state["exp_hessian_diag_sq"] for state in states],
            grads,
            [state["hessian_diagonal"] for state in states],
            group["betas"], step, group["hessian_power"], group["eps"],
            scratch,  # the SGD branch has consumed the decayed gradients it held
        )
        bias_correction1 = 1.0 - group["betas"][0] ** step
        return AdaptiveDirection(
            step_size=group["lr"] / bias_correction1,
            scale=scale,
            numerators=exp_avgs,
            denominators=denominators,
            decay=bias_correction1 * group["weight_decay"],
        )


register(
    "adasgd",
    AdaSGD,
    {
        "lr": 0.1, "momentum": 0.95, "betas": (0.9, 0.999), "eps": 1e-4, "weight_decay": 5e-4,
        "hessian_power": 1.0, "hessian_every": 1, "dynamic_weights": True, "dynamic_epochs": None,
        "sgd_weight": 0.5, "adam_weight": 0.5,
    },
    "AdaSGD: AdaHessian mixed with SGD momentum, dynamic weights by default (report 002)",
    extra_hyperparameters=("seed",),
)
