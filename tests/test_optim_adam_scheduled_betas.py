"""Adam with betas scaled by e^(−epoch) (report 004): equations, the Adam limit, exact bias correction."""

from __future__ import annotations

import math

import pytest
import torch

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.adam_scheduled_betas import AdamScheduledBetas
from optbench.protocol import call_epoch_hook, optimizer_step

from optim_helpers import DTYPE, round_trip, softplus_loss, softplus_problem


def scheduled_adam_reference(theta, grads_by_epoch, lr, betas, eps, weight_decay):
    """The equations on plain tensors: epoch e uses β·e^(−e); bias correction by the products of the betas."""
    theta = theta.clone()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    product1 = product2 = 1.0
    trajectory = []
    for epoch, grads in enumerate(grads_by_epoch):
        beta1, beta2 = betas[0] * math.exp(-epoch), betas[1] * math.exp(-epoch)
        for g in grads:
            g = g + weight_decay * theta
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            product1 *= beta1
            product2 *= beta2
            m_hat = m / (1 - product1)
            v_hat = v / (1 - product2)
            theta = theta - lr * m_hat / (v_hat.sqrt() + eps)
            trajectory.append(theta.clone())
    return trajectory


def test_steps_over_several_epochs_match_the_equations():
    generator = torch.Generator().manual_seed(0)
    num_epochs, steps_per_epoch = 4, 3
    settings = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1)
    init = torch.randn(2, 3, generator=generator, dtype=DTYPE)
    grads = [[torch.randn(2, 3, generator=generator, dtype=DTYPE) for _ in range(steps_per_epoch)]
             for _ in range(num_epochs)]
    theta = init.clone().requires_grad_()
    optimizer = AdamScheduledBetas([theta], **settings)

    expected = iter(scheduled_adam_reference(init, grads, **settings))
    for epoch in range(num_epochs):
        call_epoch_hook(optimizer, epoch, num_epochs)
        for g in grads[epoch]:
            theta.grad = g.clone()
            optimizer.step()
            torch.testing.assert_close(theta.detach(), next(expected), rtol=1e-12, atol=1e-14)
    assert optimizer.current_betas(optimizer.param_groups[0]) == pytest.approx(
        (0.9 * math.exp(-3), 0.999 * math.exp(-3)), rel=1e-15
    )


@pytest.mark.parametrize("call_hook", [False, True])
def test_first_epoch_is_torch_adam(call_hook):
    """Epoch 0 scales the betas by e^0 = 1, and the products of constant betas are β^t: plain Adam."""
    init, data = softplus_problem()
    settings = dict(lr=0.02, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    ours_theta = init.clone().requires_grad_()
    adam_theta = init.clone().requires_grad_()
    ours = AdamScheduledBetas([ours_theta], **settings)
    adam = torch.optim.Adam([adam_theta], **settings)
    if call_hook:
        call_epoch_hook(ours, 0, 10)
    for _ in range(25):
        optimizer_step(ours, lambda: softplus_loss(ours_theta, data))
        optimizer_step(adam, lambda: softplus_loss(adam_theta, data))
        torch.testing.assert_close(ours_theta.detach(), adam_theta.detach(), rtol=1e-12, atol=1e-14)
    assert (ours_theta.detach() - init).abs().max() > 0.1


def test_bias_correction_stays_exact_when_the_betas_change():
    """With a constant gradient g, the bias-corrected moments are exactly g and g² whatever betas were
    used, so every step is lr·g/(|g| + eps). A correction by the current beta to the power t (as if the
    betas had always been the current ones) breaks this as soon as the betas change."""
    g = torch.tensor([0.3, -2.0, 1e-3], dtype=DTYPE)
    lr, eps = 0.01, 1e-8
    theta = torch.zeros(3, dtype=DTYPE, requires_grad=True)
    optimizer = AdamScheduledBetas([theta], lr=lr, eps=eps)
    expected_step = -lr * g / (g.abs() + eps)
    for epoch in range(4):
        call_epoch_hook(optimizer, epoch, 4)
        for _ in range(3):
            before = theta.detach().clone()
            theta.grad = g.clone()
            optimizer.step()
            torch.testing.assert_close(theta.detach() - before, expected_step, rtol=1e-12, atol=1e-16)

    # the naive correction at the first step of epoch 1, computed on the same moments, is visibly off
    beta1_0, beta1_1 = 0.9, 0.9 * math.exp(-1)
    m_after_epoch0 = (1 - beta1_0**3) * g  # three steps with a constant gradient
    m = beta1_1 * m_after_epoch0 + (1 - beta1_1) * g
    naive = m / (1 - beta1_1**4)
    exact = m / (1 - beta1_0**3 * beta1_1)
    torch.testing.assert_close(exact, g, rtol=1e-12, atol=0)
    assert (naive - g).abs().max() > 1e-3 * g.abs().max()


def test_state_dict_round_trip_restores_epoch_and_beta_products():
    init, data = softplus_problem(seed=2)
    num_epochs, steps_per_epoch = 4, 4

    def train(optimizer, theta, start_epoch, start_step, stop_epoch, stop_step):
        """Steps from (start_epoch, start_step) up to, not including, (stop_epoch, stop_step)."""
        for epoch in range(start_epoch, num_epochs):
            if (epoch, 0) >= (start_epoch, start_step):
                call_epoch_hook(optimizer, epoch, num_epochs)
            for step in range(steps_per_epoch):
                if (epoch, step) < (start_epoch, start_step):
                    continue
                if (epoch, step) >= (stop_epoch, stop_step):
                    return
                optimizer_step(optimizer, lambda: softplus_loss(theta, data))

    theta_full = init.clone().requires_grad_()
    train(AdamScheduledBetas([theta_full], lr=0.02), theta_full, 0, 0, num_epochs, 0)

    theta_first = init.clone().requires_grad_()
    first = AdamScheduledBetas([theta_first], lr=0.02)
    train(first, theta_first, 0, 0, 2, 2)  # stop in the middle of epoch 2
    checkpoint = round_trip({"theta": theta_first.detach(), "optimizer": first.state_dict()})

    theta_resumed = checkpoint["theta"].clone().requires_grad_()
    resumed = AdamScheduledBetas([theta_resumed], lr=0.5)
    resumed.load_state_dict(checkpoint["optimizer"])
    assert resumed.param_groups[0]["epoch"] == 2  # the betas of epoch 2 without calling the hook again
    train(resumed, theta_resumed, 2, 2, num_epochs, 0)

    assert torch.equal(theta_resumed.detach(), theta_full.detach())


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"lr": -0.001}, "invalid lr -0.001"),
        ({"eps": -1.0}, "invalid eps -1.0"),
        ({"weight_decay": -0.1}, "invalid weight_decay -0.1"),
        ({"betas": (1.0, 0.999)}, r"invalid betas\[0\] 1.0"),
        ({"betas": (0.9, 1.0)}, r"invalid betas\[1\] 1.0"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        AdamScheduledBetas([torch.zeros(2, requires_grad=True)], **hyperparameters)
    with pytest.raises(ValueError, match=message):
        make_optimizer("adam_scheduled_betas", [torch.zeros(2, requires_grad=True)], **hyperparameters)


@pytest.mark.parametrize("epoch", [-1, 1.5])
def test_invalid_epoch_raises(epoch):
    optimizer = AdamScheduledBetas([torch.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="invalid epoch"):
        optimizer.on_epoch_start(epoch, 10)


def test_registry_builds_it_with_adam_defaults():
    expected = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    assert default_hyperparameters("adam_scheduled_betas") == expected
    optimizer = make_optimizer("adam_scheduled_betas", [torch.zeros(2, requires_grad=True)])
    assert isinstance(optimizer, AdamScheduledBetas)
    group = optimizer.param_groups[0]
    assert {key: group[key] for key in expected} == expected and group["epoch"] == 0
