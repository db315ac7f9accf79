"""The variance of SVRG's estimate against the minibatch gradient's, and the MetaInit trace: both against
independent computations, and stored so that a chapter executed again measures nothing."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from optbench import gradient_variance, metainit, training
from optbench.config import RunConfig
from optbench.optim.svrg import SVRG
from optbench.store import CorruptRecordWarning, ResultsStore, load_measurement, save_measurement


def _least_squares(seed=0, examples=40, features=6):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(examples, features, generator=generator, dtype=torch.float64)
    targets = inputs @ torch.randn(features, generator=generator, dtype=torch.float64) + 0.3 * torch.randn(examples, generator=generator, dtype=torch.float64)
    return inputs, targets


def _half_squared_error(outputs, targets):
    return 0.5 * ((outputs.squeeze(-1) - targets) ** 2).mean()


def test_variances_match_the_closed_form_gradients_of_least_squares():
    inputs, targets = _least_squares()
    model = nn.Linear(6, 1, bias=False).double()
    optimizer = SVRG(model.parameters(), lr=0.1)
    snapshot = model.weight.detach().clone().reshape(-1)

    def full_gradient():
        _half_squared_error(model(inputs), targets).backward()

    optimizer.take_snapshot(full_gradient)
    with torch.no_grad():
        model.weight.add_(0.2 * torch.ones_like(model.weight))
    current = model.weight.detach().clone().reshape(-1)
    batches = [(inputs[start:start + 8], targets[start:start + 8]) for start in range(0, 32, 8)]
    measured = gradient_variance.estimator_variances(model, optimizer, batches, loss_fn=_half_squared_error)

    # the same quantities from the formulas, in numpy: g_B(θ) = X_Bᵀ(X_B θ − y_B)/|B|
    X, y = inputs.numpy(), targets.numpy()
    theta, tilde = current.numpy(), snapshot.numpy()
    mu = X.T @ (X @ tilde - y) / len(y)
    plain = np.stack([X[s:s + 8].T @ (X[s:s + 8] @ theta - y[s:s + 8]) / 8 for s in range(0, 32, 8)])
    reduced = np.stack([plain[j] - X[s:s + 8].T @ (X[s:s + 8] @ tilde - y[s:s + 8]) / 8 + mu for j, s in enumerate(range(0, 32, 8))])
    expected_plain = ((plain - plain.mean(axis=0)) ** 2).sum() / 3
    expected_reduced = ((reduced - reduced.mean(axis=0)) ** 2).sum() / 3
    assert measured["variance_sgd"] == pytest.approx(expected_plain, rel=1e-10)
    assert measured["variance_svrg"] == pytest.approx(expected_reduced, rel=1e-10)
    assert measured["ratio"] == pytest.approx(expected_reduced / expected_plain, rel=1e-10)
    assert measured["drift"] == pytest.approx(np.linalg.norm(theta - tilde) / np.linalg.norm(tilde), rel=1e-10)
    # the iterate, the snapshot and the gradients are left as they were
    assert torch.equal(model.weight.detach().reshape(-1), current) and model.weight.grad is None
    assert torch.equal(optimizer.state[model.weight]["snapshot"].reshape(-1), snapshot)


def test_measurement_leaves_batchnorm_statistics_and_the_mode_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    optimizer = SVRG(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(12, 1, 8, 8), torch.randint(0, 3, (12,))

    def full_gradient():
        nn.functional.cross_entropy(model(inputs), targets).backward()

    optimizer.take_snapshot(full_gradient)
    model.eval()
    running = model[1].running_mean.clone()
    gradient_variance.estimator_variances(model, optimizer, [(inputs[:6], targets[:6]), (inputs[6:], targets[6:])])
    assert torch.equal(model[1].running_mean, running) and not model.training


def test_on_a_convex_problem_svrg_varies_less_than_the_minibatch_gradient_along_training(tmp_path):
    # softmax regression (an MLP without hidden layers) on the digits: a convex loss, where SVRG's estimate must
    # vary less than the plain minibatch gradient once the iterate sits near its snapshot
    config = RunConfig(optimizer="svrg", num_epochs=3, hyperparameters={"lr": 0.05}, dataset="digits", image_size=8, model="mlp",
                       model_options={"hidden_sizes": []}, max_train_examples=320, batch_size=32)
    store = ResultsStore(tmp_path / "store")
    frame = gradient_variance.measure_along_training(config, points_per_epoch=2, num_batches=6, store=store, progress=False)
    assert frame["epoch"].tolist() == [1, 1, 2, 2, 3, 3] and frame["step"].tolist() == [4, 9] * 3
    assert frame["epochs_done"].tolist() == pytest.approx([0.4, 0.9, 1.4, 1.9, 2.4, 2.9])
    assert (frame["variance_sgd"] > 0).all()
    assert (frame["variance_svrg"] < frame["variance_sgd"]).all(), frame
    assert (frame["ratio"] < 0.5).all(), frame
    # stored: a second call trains nothing
    stored = list((store.root / "measurements").glob("variance-*.json"))
    assert len(stored) == 1
    original = training.train
    training.train = lambda *args, **kwargs: pytest.fail("the stored measurement was not reused")
    try:
        again = gradient_variance.measure_along_training(config, points_per_epoch=2, num_batches=6, store=store, progress=False)
    finally:
        training.train = original
    assert again.to_dict() == frame.to_dict()


def test_the_training_under_measurement_is_the_run_itself(tmp_path):
    config = RunConfig(optimizer="svrg", num_epochs=2, hyperparameters={"lr": 0.05}, dataset="digits", image_size=8, model="mlp",
                       model_options={"hidden_sizes": [16]}, max_train_examples=128, batch_size=32, augment=True)
    recorded = []
    original = training.train

    def keep(*args, **kwargs):
        recorded.append(original(*args, **kwargs))
        return recorded[-1]

    training.train = keep
    try:
        gradient_variance.measure_along_training(config, points_per_epoch=1, num_batches=2, store=ResultsStore(tmp_path), progress=False)
    finally:
        training.train = original
    plain = original(config, progress=False)
    assert [row["train_loss"] for row in recorded[0]["epochs"]] == [row["train_loss"] for row in plain["epochs"]]


def test_measurement_steps_end_just_before_the_last_step_of_the_epoch():
    assert gradient_variance.measurement_steps(11, 2) == [4, 10]
    assert gradient_variance.measurement_steps(10, 3) == [2, 5, 9]
    assert gradient_variance.measurement_steps(1, 2) == [0]


def test_bad_measurements_are_refused_before_training(tmp_path):
    sgd = RunConfig(optimizer="sgd", num_epochs=1, model="mlp", image_size=8)
    with pytest.raises(ValueError, match="invalid optimizer 'sgd' for the variance measurement"):
        gradient_variance.measure_along_training(sgd, store=ResultsStore(tmp_path), progress=False)
    with pytest.raises(ValueError, match="invalid num_batches 1"):
        gradient_variance.measure_along_training(RunConfig(optimizer="svrg", num_epochs=1), num_batches=1, store=ResultsStore(tmp_path))
    assert not (tmp_path / "measurements").exists()


def test_a_damaged_stored_measurement_is_measured_again(tmp_path):
    path = tmp_path / "measurements" / "variance-x.json"
    save_measurement(path, [{"step": 1, "ratio": float("nan")}], 1, {})
    frame = load_measurement(path, 1, ["step", "ratio"])
    assert frame["step"].tolist() == [1] and np.isnan(frame["ratio"].iloc[0])
    path.write_text('{"schema": 1, "rows": [{"step": 1}]}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_measurement(path, 1, ["step", "ratio"]) is None
    assert any(issubclass(item.category, CorruptRecordWarning) and "lack" in str(item.message) for item in caught)


def test_the_gradient_quotient_trace_is_the_runs_own_metainit(tmp_path, monkeypatch):
    config = RunConfig(optimizer="sgd", num_epochs=1, model="resnet18", model_options={"norm": "none", "width": 0.0625},
                       image_size=8, max_train_examples=64, batch_size=32, init="metainit", metainit_steps=4)
    trace = metainit.measure_gradient_quotient(config, ResultsStore(tmp_path))
    assert trace["step"].tolist() == [0, 1, 2, 3, 4] and (trace["gradient_quotient"] > 0).all()
    histories = []
    original = metainit.metainit

    def recording(*args, **kwargs):
        histories.append(original(*args, **kwargs))
        return histories[-1]

    monkeypatch.setattr(metainit, "metainit", recording)
    dataset = training.prepare_data(config, torch.device("cpu"))[0]
    training.start_run(config, dataset, torch.device("cpu"))
    assert histories[0] == pytest.approx(trace["gradient_quotient"].tolist()[:4], rel=1e-6)
    # stored: measured once
    monkeypatch.setattr(metainit, "metainit", lambda *args, **kwargs: pytest.fail("measured again"))
    assert metainit.measure_gradient_quotient(config, ResultsStore(tmp_path)).equals(trace)
    with pytest.raises(ValueError, match="init 'metainit'"):
        metainit.measure_gradient_quotient(RunConfig(optimizer="sgd", num_epochs=1), ResultsStore(tmp_path))
