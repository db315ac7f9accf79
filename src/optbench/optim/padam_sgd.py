"""PADAM-SGD: Padam mixed with SGD momentum (Landro, Gallo & La Grassa 2021, official code nicolalandro/Padam,
``MAS/padam_sgd_mix.py``, class PadamSGDWeighted).

ATMO's mixing (see :mod:`.atmo`) with Padam's partially adaptive direction (Chen & Gu 2018):

    d_A = m / (sqrt(v̂) + eps)^(2p) ,   η_A = lr·sqrt(1−β2^t)/(1−β1^t)
    θ ← θ − (λ_S·lr + λ_A·η_A) · (λ_S·d_S + λ_A·d_A)

with v̂ = v, or v̂ = max(v̂, v) with ``amsgrad=True`` (off by default, as in the authors' PADAM-SGD code).
The bias corrections sit as in Padam, not as in ATMO's Adam branch, so p = 1/2 is not ATMO once the
branches are mixed (the authors' two classes differ the same way); with λ_A = 1 it is Adam with
eps·sqrt(1−β2^t) in place of eps.
"""

from __future__ import annotations

import math

from ._moments import betas_as_tuple
from .atmo import AdaptiveForm, MomentMixedOptimizer
from .registry import is_number, register


class PadamSGD(MomentMixedOptimizer):
    """PADAM-SGD: SGD momentum mixed with Padam of partial power ``p`` in (0, 1/2], optional AMSGrad max."""

    def __init__(
        self,
        params,
        lr: float = 0.01,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.025,
        p: float = 0.125,
        sgd_weight: float = 0.5,
        adam_weight: float = 0.5,
        dynamic_weights: bool = False,
        dynamic_epochs: int | None = None,
        amsgrad: bool = False,
        fused: bool = False,
    ):
        if not is_number(p) or not 0.0 < p <= 0.5:
            raise ValueError(f"invalid p {p!r}: p must lie in (0, 1/2]")
        defaults = dict(
            lr=lr, momentum=momentum, betas=betas_as_tuple(betas), eps=eps,
            weight_decay=weight_decay, sgd_weight=sgd_weight, adam_weight=adam_weight,
            dynamic_weights=dynamic_weights, dynamic_epochs=dynamic_epochs, p=p, amsgrad=amsgrad, fused=fused,
        )
        super().__init__(params, defaults)

    def adaptive_form(self, group, step):
        beta1, beta2 = group["betas"]
        return AdaptiveForm(
            step_size=group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step),
            scale=1.0,
            eps=group["eps"],
            exponent=2.0 * group["p"],
        )


register(
    "padam_sgd",
    PadamSGD,
    {
        "lr": 0.01, "momentum": 0.9, "weight_decay": 0.025, "betas": (0.9, 0.999), "eps": 1e-8, "p": 0.125,
        "sgd_weight": 0.5, "adam_weight": 0.5, "dynamic_weights": False, "dynamic_epochs": None,
    },
    "PADAM-SGD: Padam (partial power p) mixed with SGD momentum, constant or dynamic weights (Landro et al. 2021)",
    extra_hyperparameters=("amsgrad", "fused"),
)
