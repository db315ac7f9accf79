"""Lookahead against its equations, against torch_optimizer.Lookahead (0.3.0), and as a protocol wrapper."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_optimizer

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.lookahead import Lookahead
from optbench.optim.padam import Padam
from optbench.protocol import (
    call_epoch_hook,
    gradient_evaluations_per_step,
    needs_full_gradient,
    optimizer_step,
    take_snapshot_if_needed,
)

from optim_helpers import DTYPE, round_trip, softplus_loss, softplus_problem


def lookahead_sgd_reference(theta, grads, lr, k, alpha):
    """Lookahead around plain SGD on plain tensors.

    φ = θ_0; θ ← θ − lr·g every step; every k steps φ ← φ + α(θ − φ), θ ← φ."""
    theta = theta.clone()
    slow = theta.clone()
    trajectory = []
    for step, g in enumerate(grads, start=1):
        theta = theta - lr * g
        if step % k == 0:
            slow = slow + alpha * (theta - slow)
            theta = slow.clone()
        trajectory.append(theta.clone())
    return trajectory


@pytest.mark.parametrize("k, alpha", [(1, 0.5), (3, 0.5), (4, 0.8)])
def test_steps_match_the_equations_around_sgd(k, alpha):
    generator = torch.Generator().manual_seed(0)
    init = torch.randn(5, generator=generator, dtype=DTYPE)
    grads = [torch.randn(5, generator=generator, dtype=DTYPE) for _ in range(10)]
    theta = init.clone().requires_grad_()
    optimizer = Lookahead(torch.optim.SGD([theta], lr=0.1), k=k, alpha=alpha)

    expected = lookahead_sgd_reference(init, grads, lr=0.1, k=k, alpha=alpha)
    for g, expected_theta in zip(grads, expected):
        theta.grad = g.clone()
        optimizer.step()
        torch.testing.assert_close(theta.detach(), expected_theta, rtol=1e-12, atol=1e-14)
    # the plain inner run differs, so synchronisation really happened
    plain = init - 0.1 * torch.stack(grads).sum(0)
    assert (theta.detach() - plain).abs().max() > 1e-3


def test_alpha_one_is_the_inner_optimizer():
    init, data = softplus_problem()
    wrapped_theta = init.clone().requires_grad_()
    plain_theta = init.clone().requires_grad_()
    wrapped = Lookahead(torch.optim.Adam([wrapped_theta], lr=0.05), k=2, alpha=1.0)
    plain = torch.optim.Adam([plain_theta], lr=0.05)
    for _ in range(9):
        optimizer_step(wrapped, lambda: softplus_loss(wrapped_theta, data))
        optimizer_step(plain, lambda: softplus_loss(plain_theta, data))
    torch.testing.assert_close(wrapped_theta.detach(), plain_theta.detach(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("k, alpha", [(3, 0.5), (5, 0.8)])
def test_matches_torch_optimizer_lookahead(k, alpha):
    """torch_optimizer.Lookahead creates φ after the first inner step and synchronises after inner steps
    1 (a no-op), k+1, 2k+1, ...: its run is ours started one inner step later. So our Lookahead wraps an
    inner Adam that has already taken one step, and our step j is compared with its step j + 1."""
    init, data = softplus_problem(seed=1)
    ours_theta = init.clone().requires_grad_()
    theirs_theta = init.clone().requires_grad_()
    ours_inner = torch.optim.Adam([ours_theta], lr=0.05)
    optimizer_step(ours_inner, lambda: softplus_loss(ours_theta, data))
    ours = Lookahead(ours_inner, k=k, alpha=alpha)
    theirs = torch_optimizer.Lookahead(torch.optim.Adam([theirs_theta], lr=0.05), k=k, alpha=alpha)
    optimizer_step(theirs, lambda: softplus_loss(theirs_theta, data))
    torch.testing.assert_close(ours_theta.detach(), theirs_theta.detach(), rtol=0, atol=0)

    for _ in range(4 * k + 2):
        optimizer_step(ours, lambda: softplus_loss(ours_theta, data))
        optimizer_step(theirs, lambda: softplus_loss(theirs_theta, data))
        torch.testing.assert_close(ours_theta.detach(), theirs_theta.detach(), rtol=1e-12, atol=1e-14)

    plain_theta = init.clone().requires_grad_()
    plain = torch.optim.Adam([plain_theta], lr=0.05)
    for _ in range(4 * k + 3):
        optimizer_step(plain, lambda: softplus_loss(plain_theta, data))
    assert (plain_theta.detach() - ours_theta.detach()).abs().max() > 1e-3  # Lookahead changed the run


def test_state_dict_round_trip_restores_slow_weights_mid_cycle():
    init, data = softplus_problem(seed=2)
    k, total, interrupt = 4, 19, 6  # 6 = one sync plus two steps into the next cycle

    def build(theta):
        return Lookahead(torch.optim.Adam([theta], lr=0.03), k=k, alpha=0.5)

    def train(optimizer, theta, steps):
        for _ in range(steps):
            optimizer_step(optimizer, lambda: softplus_loss(theta, data))

    theta_full = init.clone().requires_grad_()
    train(build(theta_full), theta_full, total)

    theta_first = init.clone().requires_grad_()
    first = build(theta_first)
    train(first, theta_first, interrupt)
    state = first.state_dict()
    slow = state["slow_state"][0]["slow_param"]
    assert (slow - theta_first.detach()).abs().max() > 1e-4  # mid-cycle: φ ≠ θ, so φ must be saved
    checkpoint = round_trip({"theta": theta_first.detach(), "optimizer": state})

    theta_resumed = checkpoint["theta"].clone().requires_grad_()
    # other lr, k and alpha: everything must come from the checkpoint
    resumed = Lookahead(torch.optim.Adam([theta_resumed], lr=0.5), k=2, alpha=0.9)
    resumed.load_state_dict(checkpoint["optimizer"])
    assert (resumed.k, resumed.alpha) == (k, 0.5)
    assert resumed.param_groups is resumed.optimizer.param_groups
    train(resumed, theta_resumed, total - interrupt)

    assert torch.equal(theta_resumed.detach(), theta_full.detach())


def test_state_dict_round_trip_with_a_scheduled_inner_optimizer():
    """Lookahead around Padam with a p/lr schedule: the hook is forwarded and both states are restored."""
    init, data = softplus_problem(seed=4)
    num_epochs, steps_per_epoch, interrupt = 4, 5, 2
    settings = dict(lr=0.005, p=0.25, p_final=0.125, lr_final=0.02)

    def train(optimizer, theta, epochs):
        for epoch in epochs:
            call_epoch_hook(optimizer, epoch, num_epochs)
            for _ in range(steps_per_epoch):
                optimizer_step(optimizer, lambda: softplus_loss(theta, data))

    theta_full = init.clone().requires_grad_()
    full = Lookahead(Padam([theta_full], **settings), k=3)
    train(full, theta_full, range(num_epochs))
    assert full.optimizer.param_groups[0]["p"] == pytest.approx(0.125)

    theta_first = init.clone().requires_grad_()
    first = Lookahead(Padam([theta_first], **settings), k=3)
    train(first, theta_first, range(interrupt))
    checkpoint = round_trip({"theta": theta_first.detach(), "optimizer": first.state_dict()})
    theta_resumed = checkpoint["theta"].clone().requires_grad_()
    resumed = Lookahead(Padam([theta_resumed]), k=3)
    resumed.load_state_dict(checkpoint["optimizer"])
    train(resumed, theta_resumed, range(interrupt, num_epochs))

    assert torch.equal(theta_resumed.detach(), theta_full.detach())


class ProtocolInner(torch.optim.SGD):
    """An inner optimizer that declares the whole protocol and records what it was asked."""

    create_graph = True
    gradient_evaluations_per_step = 3
    needs_full_gradient = True
    uses_closure = True

    def __init__(self, params):
        super().__init__(params, lr=0.1)
        self.snapshots = 0
        self.epochs = []
        self.closures = 0

    def step(self, closure=None):
        if closure is not None:
            self.closures += 1
        return super().step(closure)

    def take_snapshot(self, full_gradient):
        full_gradient()
        self.snapshots += 1

    def on_epoch_start(self, epoch, num_epochs):
        self.epochs.append((epoch, num_epochs))


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_protocol_attributes_are_forwarded():
    theta = torch.ones(2, dtype=DTYPE, requires_grad=True)
    inner = ProtocolInner([theta])
    wrapped = Lookahead(inner)
    assert wrapped.create_graph is True
    assert gradient_evaluations_per_step(wrapped) == 3
    assert needs_full_gradient(wrapped) is True

    def full_gradient():
        theta.grad = torch.full_like(theta, 2.0)

    assert take_snapshot_if_needed(wrapped, full_gradient) is True
    call_epoch_hook(wrapped, 4, 10)
    assert inner.snapshots == 1 and inner.epochs == [(4, 10)]
    # create_graph and uses_closure reach the loop: the closure is passed on (torch's SGD re-evaluates it)
    optimizer_step(wrapped, lambda: (theta**3).sum())
    assert inner.closures == 1
    assert theta.grad is None  # the loop drops the create_graph gradients after the step
    torch.testing.assert_close(theta.detach(), torch.full((2,), 0.7, dtype=DTYPE))

    plain = Lookahead(torch.optim.Adam([torch.zeros(2, requires_grad=True)]))
    assert plain.create_graph is False and plain.uses_closure is False
    assert gradient_evaluations_per_step(plain) == 1
    assert needs_full_gradient(plain) is False
    call_epoch_hook(plain, 0, 1)  # an inner optimizer without the hook is fine


def test_lr_scheduler_on_the_wrapper_drives_the_inner_optimizer():
    theta = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    inner = torch.optim.SGD([theta], lr=0.1, momentum=0.9)
    wrapped = Lookahead(inner, k=2)
    assert wrapped.param_groups is inner.param_groups
    scheduler = torch.optim.lr_scheduler.MultiStepLR(wrapped, milestones=[2], gamma=0.1)
    for _ in range(3):
        theta.grad = torch.ones(2, dtype=DTYPE)
        wrapped.step()
        scheduler.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.01)


def test_param_groups_added_through_the_wrapper_reach_the_inner_optimizer():
    first = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    second = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    wrapped = Lookahead(torch.optim.SGD([first], lr=0.1), k=2, alpha=0.5)
    wrapped.add_param_group({"params": [second], "lr": 0.2})
    assert len(wrapped.optimizer.param_groups) == 2 and wrapped.param_groups[1]["momentum"] == 0
    for _ in range(2):
        first.grad = torch.ones(2, dtype=DTYPE)
        second.grad = torch.ones(3, dtype=DTYPE)
        wrapped.step()
    # two SGD steps then φ ← φ + 0.5(θ − φ) from φ = 0
    torch.testing.assert_close(first.detach(), torch.full((2,), -0.1, dtype=DTYPE))
    torch.testing.assert_close(second.detach(), torch.full((3,), -0.2, dtype=DTYPE))


def test_deepcopy_keeps_the_inner_optimizer():
    init, data = softplus_problem(seed=5)
    theta = init.clone().requires_grad_()
    original = Lookahead(torch.optim.Adam([theta], lr=0.05), k=3)
    for _ in range(4):
        optimizer_step(original, lambda: softplus_loss(theta, data))
    twin = copy.deepcopy({"theta": theta, "optimizer": original})
    twin_theta, twin_optimizer = twin["theta"], twin["optimizer"]
    assert twin_optimizer.param_groups[0]["params"][0] is twin_theta
    for _ in range(5):
        optimizer_step(original, lambda: softplus_loss(theta, data))
        optimizer_step(twin_optimizer, lambda: softplus_loss(twin_theta, data))
    assert torch.equal(theta.detach(), twin_theta.detach())


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"k": 0}, "invalid k 0"),
        ({"k": -2}, "invalid k -2"),
        ({"k": 2.5}, "invalid k 2.5"),
        ({"alpha": 0.0}, "invalid alpha 0.0"),
        ({"alpha": 1.5}, "invalid alpha 1.5"),
        ({"alpha": -0.5}, "invalid alpha -0.5"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        Lookahead(torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1), **hyperparameters)
    with pytest.raises(ValueError, match=message):
        make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], **hyperparameters)


def test_loading_a_state_dict_without_slow_weights_raises():
    theta = torch.zeros(2, requires_grad=True)
    wrapped = Lookahead(torch.optim.SGD([theta], lr=0.1))
    with pytest.raises(ValueError, match="not a Lookahead state dict: missing lookahead, slow_state"):
        wrapped.load_state_dict(torch.optim.SGD([theta], lr=0.1).state_dict())


def test_invalid_inner_settings_raise():
    with pytest.raises(ValueError, match="invalid inner 'nonexistent' for optimizer 'lookahead'; available: .*adam"):
        make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], inner="nonexistent")
    with pytest.raises(ValueError, match="invalid inner 'lookahead'"):
        make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], inner="lookahead")
    # every hyperparameter of the inner optimizer goes through, defaults completed for stable run ids
    from optbench.optim import resolve_hyperparameters

    resolved = resolve_hyperparameters("lookahead", inner="sgd", lr=0.05, nesterov=True)
    assert resolved == {"inner": "sgd", "k": 5, "alpha": 0.5, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "nesterov": True}
    with pytest.raises(ValueError, match="'momentum'"):  # Adam takes no momentum
        make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], momentum=0.9)
    with pytest.raises(ValueError, match="invalid lr -1.0"):
        make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], lr=-1.0)


def test_registry_builds_lookahead_and_forwards_inner_hyperparameters():
    assert default_hyperparameters("lookahead") == {"inner": "adam", "k": 5, "alpha": 0.5}
    default = make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)])
    assert isinstance(default, Lookahead) and type(default.optimizer) is torch.optim.Adam
    assert (default.k, default.alpha, default.param_groups[0]["lr"]) == (5, 0.5, 1e-3)

    sgd = make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], inner="sgd", k=3, alpha=0.8,
                         lr=0.05, momentum=0.8, weight_decay=1e-4)
    assert type(sgd.optimizer) is torch.optim.SGD and (sgd.k, sgd.alpha) == (3, 0.8)
    group = sgd.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.05, 0.8, 1e-4)

    padam = make_optimizer("lookahead", [torch.zeros(2, requires_grad=True)], inner="padam", p=0.25, lr_final=0.5)
    assert isinstance(padam.optimizer, Padam) and padam.param_groups[0]["p"] == 0.25
