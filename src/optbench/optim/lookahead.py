"""Lookahead: k steps forward, 1 step back (Zhang, Lucas, Hinton & Ba 2019).

Zhang, M. R., Lucas, J., Hinton, G., Ba, J., "Lookahead Optimizer: k steps forward, 1 step back",
NeurIPS 2019 (arXiv:1907.08610). Wraps any inner optimizer A that updates the fast weights θ; slow weights
φ start at the parameters' values before the first step (φ = θ_0), and::

    θ ← A(θ)                      every step
    φ ← φ + alpha·(θ − φ) ;  θ ← φ   after every k-th inner step

alpha = 1 recovers the inner optimizer. The slow weights and the inner-step count are part of
``state_dict`` (with the inner optimizer's state), so a run resumed from a checkpoint continues exactly.

The wrapper shares the inner optimizer's ``param_groups`` (LR schedulers built on the wrapper change the
inner learning rates) and forwards the training-loop protocol of :mod:`optbench.optim` (``create_graph``,
``gradient_evaluations_per_step``, ``needs_full_gradient``/``take_snapshot``, ``on_epoch_start``,
``uses_closure``).
``state`` holds the slow weights only; the inner state is ``optimizer.optimizer.state``.

This is the update of the authors' ``lookahead_pytorch.py`` (michaelrzhang/lookahead) with
``pullback_momentum="none"``; their default alpha is 0.8 where the paper's, and ours, is 0.5, their
``"reset"``/``"pullback"`` treatments of an inner momentum buffer are not implemented, and their
``state_dict`` leaves out the slow weights, which ours keeps.

Compared with ``torch_optimizer.Lookahead`` (0.3.0), which creates φ lazily after the first inner step and
synchronises after inner steps 1, k+1, 2k+1, ..., this class follows the paper: φ = θ_0 and synchronisation
after steps k, 2k, ...
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from typing import Any, Callable, Optional

import torch

from .registry import make_optimizer, register


def check_lookahead_hyperparameters(k: Any, alpha: Any) -> None:
    """Raise ``ValueError`` unless k is an integer >= 1 and alpha a number in (0, 1]."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"invalid k {k!r}: k (inner steps per synchronisation) must be an integer >= 1")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha <= 1.0:
        raise ValueError(f"invalid alpha {alpha!r}: alpha (slow-weight step) must lie in (0, 1]")


class Lookahead(torch.optim.Optimizer):
    """Lookahead around ``optimizer`` (see the module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}")
        check_lookahead_hyperparameters(k, alpha)
        # Optimizer.__init__ sets up hooks and the (slow-weight) state; it registers the inner groups
        # through our add_param_group before self.optimizer exists, which keeps them as they are.
        super().__init__(optimizer.param_groups, {})
        self.optimizer = optimizer
        self.param_groups = optimizer.param_groups
        self.k = int(k)
        self.alpha = float(alpha)
        self.inner_steps = 0

    # -- the training-loop protocol of the inner optimizer ------------------------------------------------
    @property
    def create_graph(self) -> bool:
        return bool(getattr(self.optimizer, "create_graph", False))

    @property
    def gradient_evaluations_per_step(self) -> int:
        return int(getattr(self.optimizer, "gradient_evaluations_per_step", 1))

    @property
    def uses_closure(self) -> bool:
        return bool(getattr(self.optimizer, "uses_closure", False))

    @property
    def needs_full_gradient(self) -> bool:
        return bool(getattr(self.optimizer, "needs_full_gradient", False))

    def take_snapshot(self, full_gradient: Callable[[], None]) -> None:
        self.optimizer.take_snapshot(full_gradient)

    def on_epoch_start(self, epoch: int, num_epochs: int) -> None:
        hook = getattr(self.optimizer, "on_epoch_start", None)
        if hook is not None:
            hook(epoch, num_epochs)

    # -- optimizer interface ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "optimizer" not in self.__dict__:
            super().add_param_group(param_group)
        else:
            # the inner optimizer fills in its own defaults; the shared list then shows the new group
            self.optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        params = [param for group in self.param_groups for param in group["params"]]
        with torch.no_grad():
            for param in params:
                if "slow_param" not in self.state[param]:
                    self.state[param]["slow_param"] = param.detach().clone()
        # not under no_grad: the inner step runs in the grad mode the training loop gives it
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self.inner_steps += 1
        if self.inner_steps % self.k == 0:
            with torch.no_grad():
                slow_params = [self.state[param]["slow_param"] for param in params]
                torch._foreach_lerp_(slow_params, params, self.alpha)
                torch._foreach_copy_(params, slow_params)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict plus ``slow_state`` (φ by parameter index) and ``lookahead``
        (k, alpha and the inner-step count)."""
        inner = self.optimizer.state_dict()
        # same parameter numbering as the inner dict: both walk the same shared param_groups
        slow_state = super().state_dict()["state"]
        return {
            **inner,
            "slow_state": slow_state,
            "lookahead": {"k": self.k, "alpha": self.alpha, "inner_steps": self.inner_steps},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = {"slow_state", "lookahead"} - set(state_dict)
        if missing:
            raise ValueError(f"not a Lookahead state dict: missing {', '.join(sorted(missing))}")
        state_dict = dict(state_dict)
        slow_state = state_dict.pop("slow_state")
        settings = state_dict.pop("lookahead")
        check_lookahead_hyperparameters(settings["k"], settings["alpha"])
        self.optimizer.load_state_dict(state_dict)
        # the inner load replaces its group list; share the new one
        self.param_groups = self.optimizer.param_groups
        params = [param for group in self.param_groups for param in group["params"]]
        self.state = defaultdict(dict)
        for index, saved in slow_state.items():
            param = params[int(index)]
            slow = saved["slow_param"].to(device=param.device, dtype=param.dtype, copy=True)
            self.state[param] = {"slow_param": slow}
        self.k = int(settings["k"])
        self.alpha = float(settings["alpha"])
        self.inner_steps = int(settings["inner_steps"])

    def __getstate__(self) -> dict[str, Any]:
        # torch's default keeps only defaults/state/param_groups; copies and pickles need the inner optimizer
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha},\n  {self.optimizer!r})"


def _lookahead(params, inner, k, alpha, **inner_hyperparameters):
    check_lookahead_hyperparameters(k, alpha)
    return Lookahead(make_optimizer(inner, params, **inner_hyperparameters), k=k, alpha=alpha)


register(
    "lookahead",
    _lookahead,
    {"inner": "adam", "k": 5, "alpha": 0.5},
    "Lookahead (Zhang et al. 2019) around a registered inner optimizer; other hyperparameters go to the inner one",
    wraps="inner",
)
