"""SVRG against its equations on least squares, its variance reduction, BatchNorm, checkpoints, validation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from optbench.optim import make_optimizer
from optbench.optim.svrg import SVRG
from optbench.protocol import (
    frozen_batchnorm_statistics,
    gradient_evaluations_per_step,
    optimizer_step,
    take_snapshot_if_needed,
)

from optim_helpers import DTYPE, LeastSquares, batch_loss, flat_parameters, plain_gradient, round_trip

NUM_EXAMPLES, DIMENSION, BATCH_SIZE = 200, 10, 10
PROBLEM = LeastSquares(NUM_EXAMPLES, DIMENSION, noise=1.0)


def full_gradient_of(model, inputs, targets):
    def full_gradient() -> None:
        with frozen_batchnorm_statistics(model):
            batch_loss(model, inputs, targets).backward()

    return full_gradient


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.5, 0.01)])
def test_steps_match_the_equations(momentum, weight_decay):
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    optimizer = SVRG(model.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
    design = torch.cat([inputs, torch.ones(NUM_EXAMPLES, 1, dtype=DTYPE)], dim=1)  # (weight, bias)
    batches = [torch.arange(0, 10), torch.arange(10, 20), torch.arange(50, 60), torch.arange(90, 100)]

    theta = flat_parameters(model).clone()
    buffer = None
    snapshot = mean_gradient = None
    for index, batch in enumerate(batches):
        if index in (0, 2):  # a snapshot before the first step and again before the third
            assert take_snapshot_if_needed(optimizer, full_gradient_of(model, inputs, targets))
            snapshot, mean_gradient = theta.clone(), plain_gradient(design, targets, theta)
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)

        direction = (
            plain_gradient(design[batch], targets[batch], theta)
            - plain_gradient(design[batch], targets[batch], snapshot)
            + mean_gradient
            + weight_decay * theta
        )
        buffer = direction if buffer is None or momentum == 0.0 else momentum * buffer + direction
        theta = theta - 0.05 * buffer
        torch.testing.assert_close(flat_parameters(model), theta, rtol=1e-12, atol=1e-13)
    # the steps moved: right after a snapshot v = μ exactly, later steps differ from it
    assert not torch.allclose(theta, flat_parameters(PROBLEM.linear_model()))


def test_protocol_attributes_and_registry():
    model = PROBLEM.linear_model(bias=False)
    optimizer = make_optimizer("svrg", model.parameters())
    assert isinstance(optimizer, SVRG)
    assert optimizer.defaults == {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}
    assert gradient_evaluations_per_step(optimizer) == 2
    assert optimizer.needs_full_gradient


def test_step_before_snapshot_or_without_closure_raises():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model(bias=False)
    optimizer = SVRG(model.parameters())
    with pytest.raises(RuntimeError, match="take_snapshot"):
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[:10], targets[:10]), model)
    take_snapshot_if_needed(optimizer, full_gradient_of(model, inputs, targets))
    batch_loss(model, inputs[:10], targets[:10]).backward()
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


def run_epochs(optimizer, model, inputs, targets, num_epochs: int, seed: int = 2) -> list[float]:
    """Epochs of shuffled minibatches through the protocol; the suboptimality gap after each epoch."""
    solution = torch.linalg.lstsq(inputs, targets.unsqueeze(1)).solution.squeeze(1)
    optimum = 0.5 * ((inputs @ solution - targets) ** 2).mean()
    generator = torch.Generator().manual_seed(seed)
    gaps = []
    for _ in range(num_epochs):
        take_snapshot_if_needed(optimizer, full_gradient_of(model, inputs, targets))
        order = torch.randperm(NUM_EXAMPLES, generator=generator)
        for start in range(0, NUM_EXAMPLES, BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)
        with torch.no_grad():
            gaps.append(float(batch_loss(model, inputs, targets) - optimum))
    return gaps


def test_svrg_converges_linearly_where_sgd_stalls_at_its_noise_floor():
    inputs, targets = PROBLEM.data()
    svrg_model, sgd_model = PROBLEM.linear_model(bias=False), PROBLEM.linear_model(bias=False)
    svrg_gaps = run_epochs(SVRG(svrg_model.parameters(), lr=0.1), svrg_model, inputs, targets, num_epochs=15)
    sgd_gaps = run_epochs(torch.optim.SGD(sgd_model.parameters(), lr=0.1), sgd_model, inputs, targets, num_epochs=15)
    assert svrg_gaps[0] > 1e-4
    assert svrg_gaps[-1] < 1e-10
    # linear rate: the gap falls by at least 10x every 2 epochs until it reaches round-off
    for early, late in zip(svrg_gaps[:6], svrg_gaps[2:8]):
        assert late < 0.1 * early
    # plain SGD with the same step hovers at a noise floor orders of magnitude above
    assert min(sgd_gaps[4:]) > 1e-4


def test_variance_reduced_estimate_is_unbiased_with_a_much_smaller_variance():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model(bias=False)
    optimizer = SVRG(model.parameters(), lr=0.05)
    run_epochs(optimizer, model, inputs, targets, num_epochs=2)
    # snapshot, a few steps away from it, then measure at that fixed iterate over every batch of a partition
    take_snapshot_if_needed(optimizer, full_gradient_of(model, inputs, targets))
    for start in range(0, 5 * BATCH_SIZE, BATCH_SIZE):
        optimizer_step(optimizer, lambda: batch_loss(model, inputs[start:start + BATCH_SIZE],
                                                     targets[start:start + BATCH_SIZE]), model)
    theta = model.weight.detach().clone()
    true_gradient = plain_gradient(inputs, targets, theta.squeeze(0))

    minibatch_gradients, reduced_gradients = [], []
    for start in range(0, NUM_EXAMPLES, BATCH_SIZE):
        batch_inputs, batch_targets = inputs[start:start + BATCH_SIZE], targets[start:start + BATCH_SIZE]

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(model, batch_inputs, batch_targets)
            loss.backward()
            return loss

        closure()
        minibatch_gradient = model.weight.grad.clone()
        (reduced,) = optimizer.variance_reduced_gradient(closure)
        # the measurement leaves the iterate and the plain batch gradient in place
        assert torch.equal(model.weight.detach(), theta)
        assert torch.equal(model.weight.grad, minibatch_gradient)
        minibatch_gradients.append(minibatch_gradient.squeeze(0))
        reduced_gradients.append(reduced.squeeze(0))

    minibatch_gradients, reduced_gradients = torch.stack(minibatch_gradients), torch.stack(reduced_gradients)
    # over a partition both estimates average to the full gradient exactly
    torch.testing.assert_close(minibatch_gradients.mean(0), true_gradient, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(reduced_gradients.mean(0), true_gradient, rtol=1e-10, atol=1e-12)
    sgd_variance = ((minibatch_gradients - true_gradient) ** 2).sum(1).mean()
    svrg_variance = ((reduced_gradients - true_gradient) ** 2).sum(1).mean()
    assert sgd_variance > 0.1
    assert svrg_variance < 0.01 * sgd_variance


def batchnorm_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(DIMENSION, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).double()


def batchnorm_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model[1].named_buffers()}


def test_snapshot_and_closure_passes_leave_batchnorm_statistics_alone():
    inputs, targets = PROBLEM.data()
    model = batchnorm_model()
    optimizer = SVRG(model.parameters(), lr=0.01)
    before = batchnorm_buffers(model)
    take_snapshot_if_needed(optimizer, full_gradient_of(model, inputs, targets))
    for name, value in batchnorm_buffers(model).items():
        assert torch.equal(value, before[name]), name

    for start in (0, 10, 20):
        batch_inputs, batch_targets = inputs[start:start + 10], targets[start:start + 10]
        # the expected statistics: exactly one train-mode forward pass on the batch, at the current iterate
        expected_model = copy.deepcopy(model)
        expected_model(batch_inputs)
        expected = batchnorm_buffers(expected_model)
        optimizer_step(optimizer, lambda: batch_loss(model, batch_inputs, batch_targets), model)
        for name, value in batchnorm_buffers(model).items():
            assert torch.equal(value, expected[name]), name
    assert int(model[1].num_batches_tracked) == 3


def test_state_dict_round_trip_continues_identically():
    inputs, targets = PROBLEM.data()
    model = PROBLEM.linear_model()
    optimizer = SVRG(model.parameters(), lr=0.05, momentum=0.5)
    batches = [torch.arange(start, start + BATCH_SIZE) for start in range(0, 60, BATCH_SIZE)]

    def train(optimizer, model, batch_list, snapshot_before):
        for index, batch in enumerate(batch_list):
            if index == snapshot_before:
                take_snapshot_if_needed(optimizer, full_gradient_of(model, inputs, targets))
            optimizer_step(optimizer, lambda: batch_loss(model, inputs[batch], targets[batch]), model)

    train(optimizer, model, batches[:3], snapshot_before=0)
    checkpoint = round_trip({"model": model.state_dict(), "optimizer": optimizer.state_dict()})

    resumed_model = PROBLEM.linear_model(seed=99)
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = SVRG(resumed_model.parameters(), lr=0.05, momentum=0.5)
    resumed.load_state_dict(checkpoint["optimizer"])
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        for key in ("snapshot", "full_gradient", "momentum_buffer"):
            assert torch.equal(optimizer.state[p][key], resumed.state[q][key])

    # two steps on the old snapshot (a resumed run without x̃ and μ would differ or fail), then a new one
    train(optimizer, model, batches[3:], snapshot_before=2)
    train(resumed, resumed_model, batches[3:], snapshot_before=2)
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "hyperparameters, name",
    [({"lr": -0.1}, "lr"), ({"lr": 0.0}, "lr"), ({"momentum": -0.1}, "momentum"), ({"momentum": 1.0}, "momentum"),
     ({"weight_decay": -1e-4}, "weight_decay")],
)
def test_invalid_hyperparameters_raise_naming_the_parameter(hyperparameters, name):
    model = PROBLEM.linear_model(bias=False)
    with pytest.raises(ValueError, match=name):
        SVRG(model.parameters(), **hyperparameters)
    with pytest.raises(ValueError, match=name):
        make_optimizer("svrg", model.parameters(), **hyperparameters)


def test_training_loop_counts_snapshot_passes_and_two_gradients_per_example():
    from optbench.config import RunConfig
    from optbench.training import train

    num_examples, num_epochs = 100, 3
    config = RunConfig(
        optimizer="svrg", num_epochs=num_epochs, dataset="digits", model="mlp", model_options={"hidden_sizes": [16]},
        hyperparameters={"lr": 0.05}, batch_size=32, max_train_examples=num_examples,
    )
    record = train(config, device="cpu", progress=False)
    assert record["status"] == "finished"
    # per epoch: one full pass for the snapshot (n) and two batch gradients per example (2n), batches of
    # 32, 32, 32, 4 included
    assert [epoch["grad_evals"] for epoch in record["epochs"]] == [
        3 * num_examples * (epoch + 1) for epoch in range(num_epochs)
    ]
    losses = [epoch["train_loss"] for epoch in record["epochs"]]
    assert losses[-1] < losses[0]
