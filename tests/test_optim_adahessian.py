"""AdaHessian against torch_optimizer.Adahessian and its equations, the Hutchinson estimate, the probes, the
Hessian schedule and its cost accounting, checkpoints (RNG included), validation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_optimizer

from optbench.optim import default_hyperparameters, make_optimizer
from optbench.optim.adahessian import AdaHessian
from optbench.protocol import gradient_evaluations_per_step, optimizer_step
from optbench.verification import record_probes

from optim_helpers import (
    DTYPE,
    classification_loss,
    conv_net,
    count_hessian_vector_products,
    image_batches,
    round_trip,
    train_classifier,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


@pytest.mark.parametrize("hessian_power, weight_decay", [(1.0, 5e-3), (0.5, 0.0)])
def test_matches_torch_optimizer_adahessian_with_the_same_probes(monkeypatch, hessian_power, weight_decay):
    model, reference_model = conv_net(), conv_net()
    hyperparameters = dict(lr=0.1, betas=(0.9, 0.99), eps=1e-4, weight_decay=weight_decay, hessian_power=hessian_power)
    ours = AdaHessian(model.parameters(), seed=7, **hyperparameters)
    reference = torch_optimizer.Adahessian(reference_model.parameters(), **hyperparameters)
    drawn = record_probes(ours)
    randint_like = torch.randint_like

    for inputs, targets in image_batches(6):
        ours.zero_grad()
        classification_loss(model, inputs, targets).backward(create_graph=True)
        ours.step()

        # torch_optimizer draws 2·randint_like(p, high=2) − 1 per parameter: hand it our probes instead
        queue = [(z + 1) / 2 for z in drawn[-1]]
        monkeypatch.setattr(torch, "randint_like", lambda p, **kwargs: queue.pop(0))
        reference.zero_grad()
        classification_loss(reference_model, inputs, targets).backward(create_graph=True)
        reference.step()
        monkeypatch.setattr(torch, "randint_like", randint_like)
        assert not queue

    assert len(drawn) == 6
    for a, b in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def quadratic_problem(seed=0):
    """f(θ) = ½ xᵀAx + cᵀx over x = (conv kernel W of shape 2×2×2×2, bias b of 3): H = A, known."""
    generator = torch.Generator().manual_seed(seed)
    size = 16 + 3
    root = torch.randn(size, size, generator=generator, dtype=DTYPE)
    hessian = (root + root.T) / 2  # indefinite and not diagonal
    shift = torch.randn(size, generator=generator, dtype=DTYPE)
    weight = torch.randn(2, 2, 2, 2, generator=generator, dtype=DTYPE, requires_grad=True)
    bias = torch.randn(3, generator=generator, dtype=DTYPE, requires_grad=True)

    def loss():
        x = torch.cat([weight.reshape(-1), bias])
        return 0.5 * x @ hessian @ x + shift @ x

    return hessian, shift, weight, bias, loss


def test_first_steps_match_the_equations():
    hessian, shift, weight, bias, loss = quadratic_problem()
    lr, (beta1, beta2), eps, wd, k = 0.1, (0.8, 0.95), 1e-3, 0.01, 1.0
    x = torch.cat([weight.detach().reshape(-1), bias.detach()])
    optimizer = AdaHessian([weight, bias], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, hessian_power=k)
    drawn = record_probes(optimizer)
    m, v = torch.zeros(19, dtype=DTYPE), torch.zeros(19, dtype=DTYPE)
    for t in range(1, 5):
        optimizer.zero_grad()
        loss().backward(create_graph=True)
        optimizer.step()

        z = torch.cat([drawn[-1][0].reshape(-1), drawn[-1][1]])
        g = hessian @ x + shift
        hz = (hessian @ z).abs()
        # one value per 2×2 kernel (4 consecutive entries of W), repeated over the kernel
        d = torch.cat([hz[:16].reshape(4, 4).mean(dim=1).repeat_interleave(4), hz[16:]])
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * d**2
        denominator = ((v / (1 - beta2**t)).sqrt()) ** k + eps
        x = x - lr * ((m / (1 - beta1**t)) / denominator + wd * x)
        torch.testing.assert_close(torch.cat([weight.detach().reshape(-1), bias.detach()]), x, rtol=1e-12, atol=1e-14)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    """H = diag(h): Hz = h ⊙ z, so |Hz| = |h| with any single probe."""
    generator = torch.Generator().manual_seed(1)
    curvature = torch.randn(7, generator=generator, dtype=DTYPE)
    theta = torch.randn(7, generator=generator, dtype=DTYPE, requires_grad=True)
    optimizer = AdaHessian([theta], seed=3)
    (0.5 * (curvature * theta**2).sum()).backward(create_graph=True)
    optimizer.step()
    torch.testing.assert_close(optimizer.state[theta]["hessian_diagonal"], curvature.abs(), rtol=1e-14, atol=0)


def test_hutchinson_expectation_is_the_hessian_diagonal():
    """E_z[z ⊙ Hz] = diag(H) for a non-diagonal H (Monte Carlo over the optimizer's own probes)."""
    hessian, shift, weight, bias, loss = quadratic_problem(seed=2)
    params = [weight, bias]
    optimizer = AdaHessian(params, seed=11)
    samples = 2000
    total = torch.zeros(19, dtype=DTYPE)
    for _ in range(samples):
        for p in params:
            p.grad = None
        grads = torch.autograd.grad(loss(), params, create_graph=True)
        for p, g in zip(params, grads):
            p.grad = g
        probes = optimizer.rademacher_probes(params)
        products = optimizer.hessian_vector_products(params, probes)
        total += torch.cat([(z * hz).reshape(-1) for z, hz in zip(probes, products)])
    estimate = total / samples
    # each coordinate is a mean of ±(sums of off-diagonal entries): standard error ≤ ‖H‖_row / sqrt(n)
    tolerance = 4 * hessian.norm(dim=1).max() / samples**0.5
    assert (estimate - hessian.diagonal()).abs().max() < tolerance
    assert (estimate - hessian.diagonal()).abs().max() < 0.25 * hessian.diagonal().abs().max()


def test_rademacher_probes_take_both_signs_equally_often():
    params = [torch.zeros(400, 250, dtype=torch.float32, requires_grad=True), torch.zeros(3, dtype=DTYPE)]
    optimizer = AdaHessian([params[0]], seed=0)
    large, small = optimizer.rademacher_probes(params)
    for probe, param in ((large, params[0]), (small, params[1])):
        assert probe.shape == param.shape and probe.dtype == param.dtype
        assert set(probe.unique().tolist()) <= {-1.0, 1.0}
    fraction_positive = (large > 0).double().mean().item()
    assert abs(fraction_positive - 0.5) < 0.005  # 100 000 draws: one standard error is 0.0016
    # consecutive draws differ (the generator advances)
    again, _ = optimizer.rademacher_probes(params)
    assert (again != large).any()


@pytest.mark.parametrize("every", [1, 4])
def test_hessian_every_takes_fewer_hessian_vector_products_and_the_loop_counts_them(monkeypatch, every):
    model = conv_net()
    optimizer = AdaHessian(model.parameters(), hessian_every=every, seed=0)
    calls = count_hessian_vector_products(monkeypatch)
    steps, counted, graphs = 12, 0, []
    diagonals = []
    for inputs, targets in image_batches(steps):
        graphs.append(optimizer.create_graph)
        optimizer_step(optimizer, lambda: classification_loss(model, inputs, targets), model)
        counted += gradient_evaluations_per_step(optimizer)  # what the training loop adds after each step
        diagonals.append(optimizer.state[model.conv.weight]["hessian_diagonal"].clone())
    assert len(calls) == steps // every
    assert counted == steps + steps // every
    assert graphs == [step % every == 0 for step in range(steps)]
    for step in range(steps):
        if step % every != 0:  # reused, not re-estimated
            assert torch.equal(diagonals[step], diagonals[step - 1])
        elif step > 0:
            assert not torch.equal(diagonals[step], diagonals[step - 1])


def test_a_due_estimate_without_the_graph_raises():
    model = conv_net()
    optimizer = AdaHessian(model.parameters())
    inputs, targets = image_batches(1)[0]
    classification_loss(model, inputs, targets).backward()
    with pytest.raises(RuntimeError, match="create_graph=True"):
        optimizer.step()


def test_state_dict_round_trip_continues_identically_with_the_rng():
    data = image_batches(9)
    model = conv_net()
    optimizer = AdaHessian(model.parameters(), hessian_every=2, seed=5)
    train_classifier(model, optimizer, data[:3])  # the next step reuses the diagonal, the one after draws a probe

    resumed_model = copy.deepcopy(model)
    resumed = AdaHessian(resumed_model.parameters(), hessian_every=2, seed=99)
    resumed.load_state_dict(round_trip(optimizer.state_dict()))
    assert resumed.gradient_evaluations_per_step == optimizer.gradient_evaluations_per_step
    assert resumed.create_graph == optimizer.create_graph is False

    ours, theirs = record_probes(optimizer), record_probes(resumed)
    train_classifier(model, optimizer, data[3:])
    train_classifier(resumed_model, resumed, data[3:])
    assert len(ours) == len(theirs) == 3
    for first, second in zip(ours, theirs):
        for a, b in zip(first, second):
            assert torch.equal(a, b)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


def test_seed_makes_runs_reproducible_and_none_follows_torch_manual_seed():
    data = image_batches(3)
    runs = []
    for seed in (4, 4, 5):
        model = conv_net()
        train_classifier(model, AdaHessian(model.parameters(), seed=seed), data)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    seeds = []
    for _ in range(2):
        torch.manual_seed(123)
        seeds.append(AdaHessian(conv_net().parameters()).seed)
    assert seeds[0] == seeds[1]


def test_converges_on_a_small_classification_problem():
    model = conv_net()
    optimizer = make_optimizer("adahessian", model.parameters(), lr=0.05)
    inputs, targets = image_batches(1, seed=4)[0]
    initial = classification_loss(model, inputs, targets).item()
    for _ in range(25):
        optimizer_step(optimizer, lambda: classification_loss(model, inputs, targets), model)
    assert classification_loss(model, inputs, targets).item() < 0.2 * initial


def test_registered_defaults():
    assert default_hyperparameters("adahessian") == {
        "lr": 0.15, "betas": (0.9, 0.999), "eps": 1e-4, "weight_decay": 5e-4, "hessian_power": 1.0,
        "hessian_every": 1,
    }
    optimizer = make_optimizer("adahessian", conv_net().parameters(), seed=3)
    assert isinstance(optimizer, AdaHessian) and optimizer.seed == 3 and optimizer.hessian_every == 1
    assert optimizer.create_graph is True and optimizer.gradient_evaluations_per_step == 2


@pytest.mark.parametrize(
    "hyperparameters, name",
    [
        ({"lr": -0.1}, "lr"),
        ({"eps": -1.0}, "eps"),
        ({"weight_decay": -1e-3}, "weight_decay"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"hessian_power": 1.5}, "hessian_power"),
        ({"hessian_power": -0.5}, "hessian_power"),
        ({"hessian_every": 0}, "hessian_every"),
        ({"hessian_every": 2.0}, "hessian_every"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_hyperparameters_raise(hyperparameters, name):
    with pytest.raises(ValueError, match=name):
        AdaHessian(conv_net().parameters(), **hyperparameters)
