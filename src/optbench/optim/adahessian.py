"""AdaHessian (Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, "ADAHESSIAN: An Adaptive Second Order
Optimizer for Machine Learning", AAAI 2021; official code amirgholami/adahessian).

Adam with the squared gradient replaced by a Hutchinson estimate of the Hessian diagonal:

    z ~ Rademacher (±1 with probability 1/2 each),  Hz = ∂(g·z)/∂θ
    D = |Hz|, averaged over the spatial dims of 4-D convolution kernels (one value per kernel)
    m ← β1·m + (1−β1)·g ;  v ← β2·v + (1−β2)·D²
    θ ← θ − lr·( (m/(1−β1^t)) / ((sqrt(v)/sqrt(1−β2^t))^k + eps) + wd·θ )       (decoupled weight decay)

E[z ⊙ Hz] = diag(H); |Hz| is what the paper and its code use (``image_classification/optim_adahessian.py``,
whose update this is; that code has no case for tensors that are neither ≤ 2-D nor 4-D, which here keep
their elementwise D). With ``hessian_every = s`` the diagonal is
estimated at steps 0, s, 2s, … and the last D is reused in between (the paper's delayed Hessian update).

Cost. Hz by reverse-over-reverse differentiation costs about two gradients: per convolution, the double
backward takes four convolutions (the gradients with respect to the weight, the input and the output
gradient) and carrying them back through the forward graph two more, against three for a forward and
backward pass. A step with an estimate thus costs about 3 SGD steps wherever convolutions dominate
(``benchmarks/optimizer_step.py`` times it part by part); the paper's "2× in theory" counts Hz as one
gradient, and its measured 2.42–3.23× came from GPUs. Forward-over-reverse (``torch.func.jvp`` of the
gradient) does the same arithmetic. ``hessian_every = s`` brings the average
towards (s − 1 + 3)/s.

Training-loop protocol (:mod:`optbench.optim`): ``create_graph`` is True exactly when the *next* step
estimates the diagonal (the gradient must then come from ``backward(create_graph=True)``), and
``gradient_evaluations_per_step`` is what the *last* step cost: 2 with a Hessian-vector product, else 1
(before any step: what the first step will cost). The loop reads the first before and the second after
``optimizer_step``. Probes come from generators owned by the optimizer, seeded from ``seed`` (or from
torch's global RNG when ``seed`` is None); their states are part of ``state_dict``.
"""

from __future__ import annotations

import torch

from .atmo import check_nonnegative, parameters_by_step, sqrt_into, work_buffers
from .registry import check_betas, is_number, register

HUTCHINSON_STATE_KEY = "hutchinson"


def spatially_averaged(diagonal: torch.Tensor) -> torch.Tensor:
    """One value per convolution kernel (mean over its spatial dims, keepdim); other tensors unchanged."""
    if diagonal.dim() == 4:
        return diagonal.mean(dim=(2, 3), keepdim=True)
    return diagonal


def adahessian_moments(exp_avgs, exp_hessian_diag_sqs, grads, diagonals, betas, step, hessian_power, eps,
                       scratch=None):
    """m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·D² in place; return ``(denominators, scale)``.

    (m/bc1) / ((sqrt(v)/sqrt(bc2))^k + eps) = scale · (m/bc1) / denominators, with
    denominators = v^(k/2) + eps·bc2^(k/2) and scale = bc2^(k/2): one pass fewer than dividing v by bc2.
    The denominators go into ``scratch`` (see :func:`~optbench.optim.atmo.work_buffers`) when given.
    """
    beta1, beta2 = betas
    torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(exp_hessian_diag_sqs, beta2)
    # D of a convolution kernel has shape (out, in, 1, 1) and broadcasts over the kernel
    torch._foreach_addcmul_(exp_hessian_diag_sqs, diagonals, diagonals, value=1.0 - beta2)
    scale = (1.0 - beta2**step) ** (hessian_power / 2.0)
    if hessian_power == 1.0:
        denominators = sqrt_into(scratch, exp_hessian_diag_sqs)
    else:
        denominators = torch._foreach_pow(exp_hessian_diag_sqs, hessian_power / 2.0)
    torch._foreach_add_(denominators, eps * scale)
    return denominators, scale


def check_hessian_hyperparameters(hessian_power, hessian_every, seed) -> None:
    if not is_number(hessian_power) or not 0.0 <= hessian_power <= 1.0:
        raise ValueError(f"invalid hessian_power {hessian_power!r}: hessian_power must lie in [0, 1]")
    if not isinstance(hessian_every, int) or isinstance(hessian_every, bool) or hessian_every < 1:
        raise ValueError(f"invalid hessian_every {hessian_every!r}: hessian_every must be an integer >= 1")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"invalid seed {seed!r}: seed must be None or an integer >= 0")


class HutchinsonDiagonal:
    """Mixin for optimizers that need diag(H): Rademacher probes, Hessian-vector products, the schedule.

    Call :meth:`init_hutchinson` in the constructor and :meth:`update_hessian_diagonals` at the start of
    ``step``; the estimate of each parameter is then in ``self.state[p]["hessian_diagonal"]``.
    """

    def init_hutchinson(self, hessian_every: int, seed: int | None) -> None:
        if seed is None:
            # reproducible under torch.manual_seed, and independent of later global draws
            seed = int(torch.randint(0, 2**62, (1,), dtype=torch.int64).item())
        self.hessian_every = hessian_every
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._hessian_schedule_step = 0
        self._last_step_gradient_evaluations: int | None = None

    # ----------------------------------------------------------------- protocol
    def hessian_needed(self) -> bool:
        """Whether the update uses D at all (AdaSGD: not once its adaptive weight is 0)."""
        return True

    def _trainable(self):
        return (p for group in self.param_groups for p in group["params"] if p.requires_grad)

    def _estimate_due(self, params) -> bool:
        if not self.hessian_needed():
            return False
        if self._hessian_schedule_step % self.hessian_every == 0:
            return True
        return any("hessian_diagonal" not in self.state[p] for p in params)

    @property
    def create_graph(self) -> bool:
        """Whether the next step takes a Hessian-vector product (so backward must keep the graph)."""
        return self._estimate_due(self._trainable())

    @property
    def gradient_evaluations_per_step(self) -> int:
        """Gradients computed per example by the last step (1 + Hessian-vector products)."""
        if self._last_step_gradient_evaluations is None:
            return 2 if self.create_graph else 1
        return self._last_step_gradient_evaluations

    # ----------------------------------------------------------------- estimation
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def rademacher_probes(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """One ±1 probe shaped like each parameter (one draw per device and dtype, split into views)."""
        probes: list[torch.Tensor | None] = [None] * len(params)
        buckets: dict[tuple, list[int]] = {}
        for index, param in enumerate(params):
            buckets.setdefault((param.device, param.dtype), []).append(index)
        for (device, dtype), indices in buckets.items():
            sizes = [params[i].numel() for i in indices]
            # high is exclusive: randint(0, 2) draws {0, 1}
            flat = torch.randint(0, 2, (sum(sizes),), generator=self._generator(device), device=device, dtype=dtype)
            flat.mul_(2).sub_(1)
            for index, chunk in zip(indices, flat.split(sizes)):
                probes[index] = chunk.view_as(params[index])
        return probes

    def hessian_vector_products(self, params: list[torch.Tensor], probes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Hz = ∂(g·z)/∂θ through the graph of the gradients (freed afterwards)."""
        with torch.enable_grad():
            products = torch.autograd.grad(
                [p.grad for p in params], params, grad_outputs=probes, retain_graph=False, allow_unused=True
            )
        return [torch.zeros_like(p) if hz is None else hz for p, hz in zip(params, products)]

    def update_hessian_diagonals(self) -> None:
        """Estimate D = |Hz| (spatially averaged) when due and store it in the state; count the step's cost."""
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        due = bool(params) and self._estimate_due(params)
        if due:
            with_graph = [p for p in params if p.grad.requires_grad]
            if not with_graph:
                raise RuntimeError(
                    f"{type(self).__name__} needs gradients with a graph at this step: call "
                    "loss.backward(create_graph=True) when optimizer.create_graph is True"
                )
            products = self.hessian_vector_products(with_graph, self.rademacher_probes(with_graph))
            torch._foreach_abs_(products)
            for param, product in zip(with_graph, products):
                self.state[param]["hessian_diagonal"] = spatially_averaged(product)
            for param in params:
                if not param.grad.requires_grad:
                    # a gradient that does not depend on the parameters: that row of H is zero
                    self.state[param]["hessian_diagonal"] = torch.zeros_like(param)
        self._hessian_schedule_step += 1
        self._last_step_gradient_evaluations = 2 if due else 1

    # ----------------------------------------------------------------- state
    def state_dict(self):
        state = super().state_dict()
        state[HUTCHINSON_STATE_KEY] = {
            "seed": self.seed,
            "schedule_step": self._hessian_schedule_step,
            "last_step_gradient_evaluations": self._last_step_gradient_evaluations,
            "generator_states": {device: gen.get_state() for device, gen in self._generators.items()},
        }
        return state

    def load_state_dict(self, state_dict) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop(HUTCHINSON_STATE_KEY, None)
        super().load_state_dict(state_dict)
        if saved is None:
            return
        self.seed = saved["seed"]
        self._hessian_schedule_step = saved["schedule_step"]
        self._last_step_gradient_evaluations = saved["last_step_gradient_evaluations"]
        self._generators = {}
        for device, generator_state in saved["generator_states"].items():
            self._generator(torch.device(device)).set_state(generator_state)


class AdaHessian(HutchinsonDiagonal, torch.optim.Optimizer):
    """AdaHessian (Yao et al. 2021); update rule, Hessian schedule and loop protocol in the module doc."""

    def __init__(
        self,
        params,
        lr: float = 0.15,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-4,
        weight_decay: float = 5e-4,
        hessian_power: float = 1.0,
        hessian_every: int = 1,
        seed: int | None = None,
    ):
        check_nonnegative("lr", lr)
        check_betas(betas)
        check_nonnegative("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        check_hessian_hyperparameters(hessian_power, hessian_every, seed)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, hessian_power=hessian_power)
        super().__init__(params, defaults)
        self.init_hutchinson(hessian_every, seed)
        self._work_buffers: dict[torch.Tensor, torch.Tensor] = {}

    @staticmethod
    def _init_param_state(group: dict, param: torch.Tensor, state: dict) -> None:
        state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_hessian_diag_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure=None):
        """Take one step; ``closure`` (optional) re-evaluates the loss and its gradients (with the graph)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.update_hessian_diagonals()
        for group in self.param_groups:
            for step, params in parameters_by_step(self, group, self._init_param_state).items():
                states = [self.state[p] for p in params]
                exp_avgs = [state["exp_avg"] for state in states]
                denominators, scale = adahessian_moments(
                    exp_avgs,
                    [state["exp_hessian_diag_sq"] for state in states],
                    [p.grad for p in params],
                    [state["hessian_diagonal"] for state in states],
                    group["betas"], step, group["hessian_power"], group["eps"],
                    work_buffers(self._work_buffers, params),
                )
                lr, weight_decay = group["lr"], group["weight_decay"]
                if weight_decay != 0:
                    torch._foreach_mul_(params, 1.0 - lr * weight_decay)
                bias_correction1 = 1.0 - group["betas"][0] ** step
                torch._foreach_addcdiv_(params, exp_avgs, denominators, value=-lr * scale / bias_correction1)
        return loss


register(
    "adahessian",
    AdaHessian,
    {"lr": 0.15, "betas": (0.9, 0.999), "eps": 1e-4, "weight_decay": 5e-4, "hessian_power": 1.0, "hessian_every": 1},
    "AdaHessian: Adam with a Hutchinson estimate of the Hessian diagonal (Yao et al. 2021)",
    extra_hyperparameters=("seed",),
)
