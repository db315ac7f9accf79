"""ATMO: Adam mixed with SGD momentum (Landro, Gallo & La Grassa, "Combining Optimization Methods Using an
Adaptive Meta Optimizer", Algorithms 14(6):186, 2021).

Two optimizers run side by side on the same gradient; their directions and their step sizes are mixed
with the same weights λ_S (SGD) and λ_A (adaptive branch):

    g   = ∇f(θ) + wd·θ                                   (each branch's coupled L2)
    d_S = buf ← μ·buf + g                                 (SGD momentum, first buf = g)
    m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·g²
    d_A = m / (sqrt(v)/sqrt(1−β2^t) + eps) ,   η_A = lr/(1−β1^t)          (torch's Adam)
    θ ← θ − (λ_S·lr + λ_A·η_A) · (λ_S·d_S + λ_A·d_A)

This is the authors' code (GitHub nicolalandro/Padam, ``MAS/adam_sgd_mix.py``, class AdamSGDWeighted;
report 002 cites it). PADAM-SGD (:mod:`.padam_sgd`) writes its adaptive branch in Padam's form instead,
d_A = m/(sqrt(v)+eps)^(2p) with η_A = lr·sqrt(1−β2^t)/(1−β1^t): alone (λ_A = 1) the two forms of Adam are
the same step up to where eps sits, but mixed they are not, because η_A also scales the SGD direction and
λ_A·d_A is added to λ_S·d_S. PADAM-SGD with p = 1/2 is therefore not ATMO. One step from θ = 1 on the loss
θ (lr 0.01, μ 0.95, weights 0.5/0.5, no weight decay) moves θ by −0.030250 in ATMO, −0.013696 in that form.

Weights are either constant (``sgd_weight``, ``adam_weight``) or dynamic: at the start of epoch e (from 0)
λ_A = max(0, 1 − e/E), λ_S = 1 − λ_A, so training moves from Adam to pure SGD momentum over E epochs
(``dynamic_epochs``; ``None`` means the run's number of epochs). A dynamic optimizer starts at λ_A = 1.
The adaptive branch is skipped while λ_A = 0 (pure SGD momentum costs what SGD costs).

State per parameter: ``step``; ``momentum_average`` a = (1−μ)·buf, an EMA of g started at 0 (one lerp per
step instead of a multiply and an add), rescaled when a scheduler changes μ (``momentum_of_average`` is the
μ it holds); the adaptive branch's moments (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` with AMSGrad).
On CPU the optimizer also keeps one parameter-sized work buffer (not part of the state).

``fused=True`` (ATMO and PADAM-SGD) computes steps with λ_A > 0 in one compiled kernel (:mod:`.fused`)
instead of 9–12 foreach passes.

:class:`MixedOptimizer` holds the mixing, the SGD branch and the weight schedule; subclasses only supply
the adaptive branch; :class:`MomentMixedOptimizer` adds Adam's moments and the fused path for ATMO and
PADAM-SGD (:mod:`.padam_sgd`), which differ only in :meth:`~MomentMixedOptimizer.adaptive_form`; AdaSGD
(:mod:`.adasgd`) mixes in AdaHessian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# shared with Padam and AdaBelief; AdaHessian imports sqrt_into and work_buffers from here
from ._moments import add_into, betas_as_tuple, power_, sqrt_into, work_buffers  # noqa: F401
from . import fused
from .fused import check_fused
from .registry import check_betas, is_number, register


def check_nonnegative(name: str, value) -> None:
    if not is_number(value) or not value >= 0:
        raise ValueError(f"invalid {name} {value!r}: {name} must be a number >= 0")


def parameters_by_step(optimizer: torch.optim.Optimizer, group: dict, init_state) -> dict[int, list[torch.Tensor]]:
    """Advance the step count of ``group``'s parameters that have gradients; return them keyed by step count.

    A parameter's state is created by ``init_state(group, param, state)`` at its first step. Parameters that
    missed steps keep their own count (their bias corrections differ), hence the buckets; usually one.
    """
    by_step: dict[int, list[torch.Tensor]] = {}
    for param in group["params"]:
        if param.grad is None:
            continue
        if param.grad.is_sparse:
            raise RuntimeError(f"{type(optimizer).__name__} does not support sparse gradients")
        state = optimizer.state[param]
        if "step" not in state:
            state["step"] = 0
            init_state(group, param, state)
        state["step"] += 1
        by_step.setdefault(state["step"], []).append(param)
    return by_step


@dataclass
class AdaptiveDirection:
    """The adaptive branch of one step: d_A = scale·numerators/denominators + decay·θ, step size η_A."""

    step_size: float
    scale: float
    numerators: list[torch.Tensor]
    denominators: list[torch.Tensor]
    decay: float = 0.0


@dataclass
class AdaptiveForm:
    """d_A = scale·m/(sqrt(v̂) + eps)^exponent with step size η_A = ``step_size``, at one step."""

    step_size: float
    scale: float
    eps: float
    exponent: float


class MixedOptimizer(torch.optim.Optimizer):
    """θ ← θ − (λ_S·lr + λ_A·η_A)·(λ_S·d_S + λ_A·d_A): SGD momentum mixed with an adaptive branch.

    Subclasses implement :meth:`adaptive_direction` and may add per-parameter state in
    :meth:`init_state`. The mixing weights live in each param group (``sgd_weight``, ``adam_weight``), so
    ``state_dict`` carries the current dynamic weights.
    """

    def __init__(self, params, defaults: dict):
        lr, momentum = defaults["lr"], defaults["momentum"]
        check_nonnegative("lr", lr)
        if not is_number(momentum) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum {momentum!r}: momentum must lie in [0, 1)")
        check_nonnegative("eps", defaults["eps"])
        check_nonnegative("weight_decay", defaults["weight_decay"])
        check_betas(defaults["betas"])
        check_nonnegative("sgd_weight", defaults["sgd_weight"])
        check_nonnegative("adam_weight", defaults["adam_weight"])
        dynamic, epochs = defaults["dynamic_weights"], defaults["dynamic_epochs"]
        if not isinstance(dynamic, bool):
            raise ValueError(f"invalid dynamic_weights {dynamic!r}: dynamic_weights must be True or False")
        if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
            raise ValueError(f"invalid dynamic_epochs {epochs!r}: dynamic_epochs must be None or an integer >= 1")
        if not dynamic and defaults["sgd_weight"] + defaults["adam_weight"] == 0:
            raise ValueError("invalid sgd_weight 0 and adam_weight 0: at least one mixing weight must be > 0")
        if dynamic:
            # the schedule's value at epoch 0, used until on_epoch_start says otherwise
            defaults = {**defaults, "sgd_weight": 0.0, "adam_weight": 1.0}
        super().__init__(params, defaults)
        self._work_buffers: dict[torch.Tensor, torch.Tensor] = {}

    # ----------------------------------------------------------------- schedule of the mixing weights
    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        """Dynamic weights: λ_A = max(0, 1 − epoch/E), λ_S = 1 − λ_A, E = ``dynamic_epochs`` or num_epochs."""
        if epoch < 0 or num_epochs < 1:
            raise ValueError(f"invalid epoch {epoch} of {num_epochs}: need epoch >= 0 and num_epochs >= 1")
        for group in self.param_groups:
            if not group["dynamic_weights"]:
                continue
            horizon = group["dynamic_epochs"] or num_epochs
            group["adam_weight"] = max(0.0, 1.0 - epoch / horizon)
            group["sgd_weight"] = 1.0 - group["adam_weight"]

    # ----------------------------------------------------------------- subclass interface
    def init_state(self, group: dict, param: torch.Tensor, state: dict) -> None:
        """Create the adaptive branch's per-parameter state."""
        raise NotImplementedError

    def adaptive_direction(self, group, params, grads, decayed_grads, states, step: int,
                           scratch: list[torch.Tensor] | None) -> AdaptiveDirection:
        """Update the adaptive branch's state for parameters at step ``step`` (from 1) and return its direction.

        ``grads`` are the raw gradients, ``decayed_grads`` the gradients plus wd·θ. ``scratch`` (from
        :func:`work_buffers`, or None) may hold ``decayed_grads``; the branch may overwrite it once read.
        """
        raise NotImplementedError

    def prepare_step(self) -> None:
        """Called once per step before the per-group updates (AdaSGD estimates its Hessian diagonal here)."""

    # ----------------------------------------------------------------- the step
    @torch.no_grad()
    def step(self, closure=None):
        """Take one step; ``closure`` (optional) re-evaluates the loss and its gradients."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.prepare_step()
        for group in self.param_groups:
            for step, params in parameters_by_step(self, group, self._init_param_state).items():
                self._update(group, params, step)
        return loss

    def _init_param_state(self, group: dict, param: torch.Tensor, state: dict) -> None:
        state["momentum_average"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.init_state(group, param, state)

    @staticmethod
    def _rescale_averages_if_momentum_changed(momentum: float, states: list[dict]) -> None:
        """Keep a = (1−μ)·buf exact when a scheduler changes μ between steps."""
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"invalid momentum {momentum!r}: momentum must lie in [0, 1)")
        for state in states:
            previous = state.setdefault("momentum_of_average", momentum)
            if previous != momentum:
                state["momentum_average"].mul_((1.0 - momentum) / (1.0 - previous))
                state["momentum_of_average"] = momentum

    def _update(self, group: dict, params: list[torch.Tensor], step: int) -> None:
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        sgd_weight, adam_weight = group["sgd_weight"], group["adam_weight"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        scratch = work_buffers(self._work_buffers, params)
        decayed = add_into(scratch, grads, params, weight_decay) if weight_decay != 0 else grads

        # The SGD buffer buf ← μ·buf + g (first buf = g) is kept as a = (1−μ)·buf, an EMA started at 0:
        # one lerp instead of a multiply and an add, and a_1 = (1−μ)·g gives buf_1 = g as torch.optim.SGD.
        averages = [state["momentum_average"] for state in states]
        self._rescale_averages_if_momentum_changed(momentum, states)
        torch._foreach_lerp_(averages, decayed, 1.0 - momentum)

        adaptive = None
        merged_lr = sgd_weight * lr
        if adam_weight != 0:
            adaptive = self.adaptive_direction(group, params, grads, decayed, states, step, scratch)
            merged_lr += adam_weight * adaptive.step_size

        # every term below uses the θ of before the step: the decay factor multiplies θ first, the others
        # add quantities computed beforehand
        if adaptive is not None and adaptive.decay != 0:
            torch._foreach_mul_(params, 1.0 - merged_lr * adam_weight * adaptive.decay)
        if sgd_weight != 0:
            torch._foreach_add_(params, averages, alpha=-merged_lr * sgd_weight / (1.0 - momentum))
        if adaptive is not None:
            torch._foreach_addcdiv_(
                params, adaptive.numerators, adaptive.denominators, value=-merged_lr * adam_weight * adaptive.scale
            )


class MomentMixedOptimizer(MixedOptimizer):
    """A :class:`MixedOptimizer` whose adaptive branch keeps Adam's moments (ATMO and PADAM-SGD).

    m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², v̂ = v or, with ``amsgrad``, max(v̂, v); the branch's
    direction is scale·m/(sqrt(v̂) + eps)^exponent with step size η_A, where :meth:`adaptive_form` gives
    the four numbers of each step (which is where the bias corrections go). ``fused=True`` runs steps with
    λ_A > 0 in one compiled kernel.
    """

    def __init__(self, params, defaults: dict):
        amsgrad = defaults["amsgrad"]
        if not isinstance(amsgrad, bool):
            raise ValueError(f"invalid amsgrad {amsgrad!r}: amsgrad must be True or False")
        super().__init__(params, defaults)

    def adaptive_form(self, group: dict, step: int) -> AdaptiveForm:
        """Step size, scale, eps and exponent of the adaptive branch at step ``step`` (from 1)."""
        raise NotImplementedError

    def add_param_group(self, param_group: dict) -> None:
        # checked before torch appends the group, so a bad group leaves the optimizer unchanged
        check_fused(param_group.get("fused", self.defaults["fused"]), param_group)
        super().add_param_group(param_group)

    def _update(self, group: dict, params: list[torch.Tensor], step: int) -> None:
        # with λ_A = 0 the adaptive state must stand still, which the kernel does not do; such a step is pure
        # SGD momentum and costs what SGD's does anyway
        if not group.get("fused", False) or group["adam_weight"] == 0:
            super()._update(group, params, step)
            return
        states = [self.state[p] for p in params]
        self._rescale_averages_if_momentum_changed(group["momentum"], states)
        beta1, beta2 = group["betas"]
        lr, momentum = group["lr"], group["momentum"]
        sgd_weight, adam_weight = group["sgd_weight"], group["adam_weight"]
        form = self.adaptive_form(group, step)
        merged_lr = sgd_weight * lr + adam_weight * form.step_size
        maxima = []
        if group["amsgrad"]:
            maxima = [state.setdefault("max_exp_avg_sq", state["exp_avg_sq"].clone()) for state in states]
        fused.mixed_update(
            params, [p.grad for p in params], [state["momentum_average"] for state in states],
            [state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states], maxima,
            momentum=momentum, beta1=beta1, beta2=beta2, eps=form.eps, exponent=form.exponent,
            weight_decay=group["weight_decay"],
            sgd_coefficient=-merged_lr * sgd_weight / (1.0 - momentum),
            adam_coefficient=-merged_lr * adam_weight * form.scale,
        )

    def init_state(self, group, param, state):
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    def adaptive_direction(self, group, params, grads, decayed_grads, states, step, scratch):
        beta1, beta2 = group["betas"]
        exp_avgs = [state["exp_avg"] for state in states]
        exp_avg_sqs = [state["exp_avg_sq"] for state in states]
        torch._foreach_lerp_(exp_avgs, decayed_grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, decayed_grads, decayed_grads, value=1.0 - beta2)
        second_moments = exp_avg_sqs
        if group["amsgrad"]:
            maxima = []
            for state in states:
                # a state loaded from amsgrad=False, or amsgrad switched on later, starts its max at v
                maxima.append(state.setdefault("max_exp_avg_sq", state["exp_avg_sq"].clone()))
            torch._foreach_maximum_(maxima, exp_avg_sqs)
            second_moments = maxima
        form = self.adaptive_form(group, step)
        # the decayed gradients are spent: their scratch can hold the denominators
        denominators = sqrt_into(scratch, second_moments)
        torch._foreach_add_(denominators, form.eps)
        power_(denominators, form.exponent)
        return AdaptiveDirection(step_size=form.step_size, scale=form.scale, numerators=exp_avgs,
                                 denominators=denominators)


class ATMO(MomentMixedOptimizer):
    """ATMO (Landro et al. 2021) as the authors' ``AdamSGDWeighted``: Adam mixed with SGD momentum.

    The Adam branch is torch's Adam: d_A = m/(sqrt(v̂)/sqrt(bc2) + eps), η_A = lr/bc1 (see the module doc).
    It is computed as sqrt(bc2)·m/(sqrt(v̂) + eps·sqrt(bc2)), the same number, so that the bias correction
    costs no pass over the parameters. ``amsgrad=True`` (off by default, as in the authors' code) uses the
    running maximum v̂ of v.
    """

    def __init__(
        self,
        params,
        lr: float = 0.01,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 5e-4,
        sgd_weight: float = 0.5,
        adam_weight: float = 0.5,
        dynamic_weights: bool = False,
        dynamic_epochs: int | None = None,
        *,
        amsgrad: bool = False,
        fused: bool = False,
    ):
        defaults = dict(
            lr=lr, momentum=momentum, betas=betas_as_tuple(betas), eps=eps,
            weight_decay=weight_decay, sgd_weight=sgd_weight, adam_weight=adam_weight,
            dynamic_weights=dynamic_weights, dynamic_epochs=dynamic_epochs, amsgrad=amsgrad, fused=fused,
        )
        super().__init__(params, defaults)

    def adaptive_form(self, group, step):
        beta1, beta2 = group["betas"]
        root_bias_correction2 = math.sqrt(1.0 - beta2**step)
        return AdaptiveForm(
            step_size=group["lr"] / (1.0 - beta1**step),
            scale=root_bias_correction2,
            eps=group["eps"] * root_bias_correction2,
            exponent=1.0,
        )


register(
    "atmo",
    ATMO,
    {
        "lr": 0.01, "momentum": 0.95, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 5e-4,
        "sgd_weight": 0.5, "adam_weight": 0.5, "dynamic_weights": False, "dynamic_epochs": None,
    },
    "ATMO: Adam mixed with SGD momentum, constant or dynamic weights (Landro et al. 2021)",
    extra_hyperparameters=("amsgrad", "fused"),
)
