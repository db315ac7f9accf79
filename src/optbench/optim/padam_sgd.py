"""PADAM-SGD: Padam mixed with SGD momentum (Landro, Gallo & La Grassa 2021, official code nicolalandro/Padam).

ATMO's mixing (see :mod:`.atmo`) with Padam's partially adaptive direction (Chen & Gu 2018):

    d_A = m / (sqrt(v̂) + eps)^(2p) ,   η_A = lr·sqrt(1−β2^t)/(1−β1^t)
    θ ← θ − (λ_S·lr + λ_A·η_A) · (λ_S·d_S + λ_A·d_A)

with v̂ = v, or v̂ = max(v̂, v) with ``amsgrad=True`` (off by default, as in the authors' PADAM-SGD code).
p = 1/2 without the max is ATMO.
"""

from __future__ import annotations

from .atmo import ATMO
from .registry import register


class PadamSGD(ATMO):
    """PADAM-SGD: ATMO with Padam's partial power ``p`` in (0, 1/2] and an optional AMSGrad max."""

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
        super().__init__(
            params, lr=lr, momentum=momentum, betas=betas, eps=eps, weight_decay=weight_decay,
            sgd_weight=sgd_weight, adam_weight=adam_weight, dynamic_weights=dynamic_weights,
            dynamic_epochs=dynamic_epochs, p=p, amsgrad=amsgrad, fused=fused,
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
