"""Padam: partially adaptive momentum estimation (Chen & Gu 2018).

Chen, J., Zhou, D., Tang, Y., Yang, Z., Cao, Y., Gu, Q., "Closing the Generalization Gap of Adaptive
Gradient Methods in Training Deep Neural Networks", IJCAI 2020 (arXiv:1806.06763). Update of one
parameter θ with gradient g at step t (counted from 1), as in the official code (uclaml/Padam)::

    g ← g + weight_decay·θ                                   (coupled L2 weight decay)
    m ← β1·m + (1 − β1)·g ;   v ← β2·v + (1 − β2)·g²
    v̂ ← max(v̂, v)                                            (AMSGrad max; v̂ = v when amsgrad=False)
    θ ← θ − lr·sqrt(1 − β2^t)/(1 − β1^t) · m / (sqrt(v̂) + eps)^(2p)

p = 1/2 is AMSGrad (Adam with amsgrad=True, up to where eps enters); p → 0 is SGD whose momentum is an
exponential moving average. Valid p: (0, 1/2].

Optional p/lr schedule (the future work suggested by the reproduction report of Shi, Ye & Zhang: adaptive
at the start, SGD-like at the end). With ``p_final`` and/or ``lr_final`` given, ``on_epoch_start(epoch,
num_epochs)`` sets, with ``fraction = epoch / (num_epochs − 1)`` (0 on the first epoch, 1 on the last)::

    p  = p_start + (p_final − p_start)·fraction                 (linear)
    lr = lr_start·(lr_final / lr_start)^fraction                (geometric: lr spans orders of magnitude)

The lr schedule multiplies whatever factor another scheduler has applied since the previous epoch
(``group["lr"] *= new_scheduled_lr / previous_scheduled_lr``), so it composes with step decays such as
MultiStepLR instead of overwriting them. Its state (``p_start``, ``lr_start``, ``lr_scheduled``) lives in the
parameter groups, so ``state_dict``/``load_state_dict`` restore it.

``fused=True`` runs the same update as one compiled kernel (:mod:`.fused`), one pass over memory instead
of ten, after a compilation at the first step.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ._moments import (
    add_into, betas_as_tuple, check_group_hyperparameters, gather_moment_buffers, power_, sqrt_into, work_buffers,
)
from . import fused
from .fused import check_fused
from .registry import register


def check_p(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is a number in (0, 1/2] (the partially adaptive power)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < value <= 0.5:
        raise ValueError(f"invalid {name} {value!r}: {name} must lie in (0, 1/2]")


def schedule_fraction(epoch: int, num_epochs: int) -> float:
    """Progress through training in [0, 1]: 0 on the first epoch, 1 on the last."""
    if num_epochs < 1:
        raise ValueError(f"invalid num_epochs {num_epochs!r}: num_epochs must be >= 1")
    if epoch < 0:
        raise ValueError(f"invalid epoch {epoch!r}: epochs count from 0")
    return min(epoch / max(num_epochs - 1, 1), 1.0)


class Padam(torch.optim.Optimizer):
    """Partially adaptive momentum estimation (see the module docstring for the update and the schedule)."""

    def __init__(
        self,
        params,
        lr: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 5e-4,
        p: float = 0.125,
        amsgrad: bool = True,
        p_final: Optional[float] = None,
        lr_final: Optional[float] = None,
        fused: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr, betas=betas_as_tuple(betas), eps=eps, weight_decay=weight_decay, p=p, amsgrad=amsgrad,
            p_final=p_final, lr_final=lr_final, fused=fused,
        )
        super().__init__(params, defaults)
        # CPU scratch for the decayed gradients, then the denominators (see _moments.work_buffers)
        self._work_buffers: dict[torch.Tensor, torch.Tensor] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # validated before torch appends the group, so a bad group leaves the optimizer unchanged
        settings = check_group_hyperparameters(self.defaults, param_group)
        check_p("p", settings["p"])
        if settings["p_final"] is not None:
            check_p("p_final", settings["p_final"])
        lr_final = settings["lr_final"]
        if lr_final is not None and (
            not isinstance(lr_final, (int, float)) or isinstance(lr_final, bool) or not lr_final > 0
        ):
            raise ValueError(f"invalid lr_final {lr_final!r}: lr_final must be None or a number > 0")
        check_fused(settings["fused"], param_group)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        # where the schedule starts from, and the lr it set last (to keep other schedulers' factors)
        group.setdefault("p_start", group["p"])
        group.setdefault("lr_start", group["lr"])
        group.setdefault("lr_scheduled", group["lr"])

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Move p and lr along their schedules (no-op for groups without ``p_final``/``lr_final``)."""
        fraction = schedule_fraction(epoch, num_epochs)
        for group in self.param_groups:
            if group["p_final"] is not None:
                group["p"] = group["p_start"] + (group["p_final"] - group["p_start"]) * fraction
            if group["lr_final"] is not None:
                scheduled = group["lr_start"] * (group["lr_final"] / group["lr_start"]) ** fraction
                group["lr"] = group["lr"] * (scheduled / group["lr_scheduled"])
                group["lr_scheduled"] = scheduled

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            amsgrad = group["amsgrad"]
            buffers = gather_moment_buffers(
                self, group, optimizer_name="Padam", second_moment_key="exp_avg_sq",
                max_second_moment_key="max_exp_avg_sq" if amsgrad else None,
            )
            if not buffers.params:
                continue
            params, exp_avgs, exp_avg_sqs = buffers.params, buffers.exp_avgs, buffers.second_moments
            step_sizes = [
                -group["lr"] * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step) for step in buffers.steps
            ]

            if group.get("fused", False):  # groups saved before the flag existed lack it
                fused.padam_update(
                    params, buffers.grads, exp_avgs, exp_avg_sqs, buffers.max_second_moments, step_sizes,
                    beta1=beta1, beta2=beta2, eps=group["eps"], exponent=2.0 * group["p"],
                    weight_decay=group["weight_decay"],
                )
                continue
            scratch = work_buffers(self._work_buffers, params)
            grads = buffers.grads
            if group["weight_decay"] != 0:
                # into scratch: p.grad itself stays the loss gradient
                grads = add_into(scratch, grads, params, group["weight_decay"])
            torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
            if amsgrad:
                torch._foreach_maximum_(buffers.max_second_moments, exp_avg_sqs)
                second_moments = buffers.max_second_moments
            else:
                second_moments = exp_avg_sqs
            # the decayed gradients are spent: their scratch can hold the denominators
            denominators = sqrt_into(scratch, second_moments)
            torch._foreach_add_(denominators, group["eps"])
            power_(denominators, 2.0 * group["p"])
            torch._foreach_addcdiv_(params, exp_avgs, denominators, step_sizes)
        return loss


def _padam(params, lr, betas, eps, weight_decay, p, amsgrad, p_final, lr_final, fused=False):
    return Padam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, p=p, amsgrad=amsgrad,
                 p_final=p_final, lr_final=lr_final, fused=fused)


register(
    "padam",
    _padam,
    {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 5e-4, "p": 0.125, "amsgrad": True,
     "p_final": None, "lr_final": None},
    "Padam, partially adaptive momentum (Chen & Gu 2018), optional linear p / geometric lr schedule",
    # fused joins a run's configuration only when given, so earlier runs keep their ids
    extra_hyperparameters=("fused",),
)
