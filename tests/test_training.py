import math

import pytest
import torch

from optbench.config import RunConfig
from optbench.runs import run
from optbench.store import ResultsStore
from optbench.sweeps import expand_grid, run_sweep
from optbench.training import train

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=200, batch_size=32)


def _metrics(record, keys=("train_loss", "train_accuracy", "test_loss", "test_accuracy", "grad_evals", "lr")):
    return [[row[key] for key in keys] for row in record["epochs"]]


def test_same_configuration_gives_the_same_numbers_twice_and_seeds_differ():
    config = RunConfig(optimizer="adam", num_epochs=2, dataset="digits", image_size=8, model="resnet18",
                       model_options={"width": 0.0625}, max_train_examples=128, batch_size=32, augment=True)
    first, second = train(config, progress=False), train(config, progress=False)
    assert _metrics(first) == _metrics(second)
    other_seed = train(RunConfig(**{**config.to_dict(), "seed": 1}), progress=False)
    assert _metrics(other_seed) != _metrics(first)


def test_epoch_metrics_and_gradient_evaluation_count():
    record = train(RunConfig(optimizer="sgd", num_epochs=3, hyperparameters={"lr": 0.05}, **TINY), progress=False)
    assert record["status"] == "finished" and [row["epoch"] for row in record["epochs"]] == [1, 2, 3]
    assert [row["grad_evals"] for row in record["epochs"]] == [200, 400, 600]
    for row in record["epochs"]:
        assert row["test_error"] == pytest.approx(1 - row["test_accuracy"])
        assert 0 <= row["train_accuracy"] <= 1 and row["seconds"] > 0
    assert record["epochs"][-1]["train_loss"] < record["epochs"][0]["train_loss"]
    assert record["epochs"][-1]["elapsed_seconds"] == pytest.approx(sum(row["seconds"] for row in record["epochs"]))


def test_training_loss_is_the_mean_over_the_epochs_batches():
    # with lr → 0 the parameters stay put, so the epoch's training loss equals the initial full-data loss
    config = RunConfig(optimizer="sgd", num_epochs=1, hyperparameters={"lr": 1e-12, "momentum": 0.0}, **TINY)
    record = train(config, progress=False)
    from optbench.training import build_model, prepare_data

    dataset, images, labels, _, _ = prepare_data(config, torch.device("cpu"))
    torch.manual_seed(config.seed)
    model = build_model(config, dataset, torch.device("cpu"))
    from optbench.data import normalize

    expected = torch.nn.functional.cross_entropy(model(normalize(images, dataset.mean, dataset.std)), labels).item()
    assert record["epochs"][0]["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_schedulers_set_the_learning_rate_of_each_epoch():
    multistep = train(RunConfig(optimizer="sgd", num_epochs=4, hyperparameters={"lr": 0.1}, scheduler="multistep",
                                scheduler_options={"milestones": [1, 3]}, **TINY), progress=False)
    assert [row["lr"] for row in multistep["epochs"]] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    cosine = train(RunConfig(optimizer="sgd", num_epochs=4, hyperparameters={"lr": 0.1}, scheduler="cosine", **TINY), progress=False)
    expected = [0.05 * (1 + math.cos(math.pi * epoch / 4)) for epoch in range(4)]
    assert [row["lr"] for row in cosine["epochs"]] == pytest.approx(expected)


def test_a_non_finite_loss_stops_the_run_as_diverged_with_its_epoch():
    config = RunConfig(optimizer="sgd", num_epochs=5, hyperparameters={"lr": 1e3}, **{**TINY, "model_options": {}})
    record = train(config, progress=False)
    assert record["status"] == "diverged"
    assert record["diverged_epoch"] == len(record["epochs"]) < 5
    assert not math.isfinite(record["epochs"][-1]["train_loss"])


def test_validation_fraction_evaluates_on_held_out_training_examples():
    config = RunConfig(optimizer="sgd", num_epochs=1, validation_fraction=0.25, **{**TINY, "max_train_examples": None})
    record = train(config, progress=False)
    assert record["epochs"][0]["grad_evals"] == round(1347 * 0.75)


def test_a_fold_run_trains_on_the_other_folds_and_evaluates_on_its_own():
    from optbench.training import prepare_data

    base = dict(optimizer="sgd", num_epochs=1, **{**TINY, "max_train_examples": 400})
    held_out, trained = [], []
    for fold in range(4):
        config = RunConfig(num_folds=4, fold=fold, **base)
        _, train_images, train_labels, eval_images, eval_labels = prepare_data(config, torch.device("cpu"))
        assert len(train_labels) + len(eval_labels) == 400 and len(eval_labels) == 100
        # stratified: every class in the held-out fold in its share of the 400 examples (within one example)
        _, subset_images, subset_labels, _, _ = prepare_data(RunConfig(**base), torch.device("cpu"))
        expected = torch.bincount(subset_labels, minlength=10) / 4
        assert torch.all((torch.bincount(eval_labels, minlength=10) - expected).abs() <= 1)
        held_out.append({tuple(image.flatten().tolist()) for image in eval_images})
        trained.append({tuple(image.flatten().tolist()) for image in train_images})
    everything = {tuple(image.flatten().tolist()) for image in subset_images}
    assert set().union(*held_out) == everything and all(not (a & b) for a in held_out for b in held_out if a is not b)
    assert all(train | held == everything and not (train & held) for train, held in zip(trained, held_out))
    record = train(RunConfig(num_folds=4, fold=1, **base), progress=False)
    assert record["epochs"][0]["grad_evals"] == 300


def test_fields_added_later_enter_the_run_id_only_when_set():
    plain = RunConfig(optimizer="sgd", num_epochs=1)
    # the id every store has held for this configuration since before folds and MetaInit steps existed
    assert plain.run_id == "sgd-0cc2c5d3aff0"
    assert "num_folds" not in plain.to_dict() and "metainit_steps" not in plain.to_dict()
    folded = RunConfig(optimizer="sgd", num_epochs=1, num_folds=4, fold=0)
    assert folded.run_id != plain.run_id and folded.to_dict()["fold"] == 0
    assert RunConfig.from_dict(folded.to_dict()) == folded
    assert RunConfig(optimizer="sgd", num_epochs=1, num_folds=4, fold=1).run_id != folded.run_id
    metainit = RunConfig(optimizer="sgd", num_epochs=1, init="metainit", metainit_steps=20)
    assert RunConfig.from_dict(metainit.to_dict()) == metainit and metainit.run_id != RunConfig(optimizer="sgd", num_epochs=1, init="metainit").run_id


def test_before_step_sees_every_step_and_leaves_the_run_as_it_was():
    config = RunConfig(optimizer="svrg", num_epochs=2, hyperparameters={"lr": 0.05}, **TINY)
    seen = []

    def look(epoch, step, model, optimizer):
        seen.append((epoch, step))
        # what a measurement does: gradients at the iterate, then gone
        model(torch.zeros(2, 1, 8, 8)).sum().backward()
        optimizer.zero_grad(set_to_none=True)

    assert _metrics(train(config, progress=False, before_step=look)) == _metrics(train(config, progress=False))
    assert seen == [(epoch, step) for epoch in range(2) for step in range(7)]


def test_run_reuses_the_stored_record_unless_forced(tmp_path):
    store = ResultsStore(tmp_path / "store")
    config = RunConfig(optimizer="adam", num_epochs=1, **TINY)
    first = run(config, store, progress=False)
    assert store.path_for(config.run_id).is_file()
    again = run(config, store, progress=False)
    assert again["provenance"]["date"] == first["provenance"]["date"] and again == first
    forced = run(config, store, force=True, progress=False)
    assert _metrics(forced) == _metrics(first)
    assert forced["provenance"]["torch_version"] == torch.__version__


def test_sweep_expands_the_grid_and_runs_only_what_is_missing(tmp_path):
    store = ResultsStore(tmp_path / "store")
    base = dict(num_epochs=1, **TINY)
    configs = expand_grid(base, optimizer=["sgd", "adam"], lr=[0.01, 0.1], seed=[0])
    assert len(configs) == 4 and {c.hyperparameters["lr"] for c in configs} == {0.01, 0.1}
    run_sweep(configs[:2], store, progress=False)
    stamps = {path.name: path.stat().st_mtime_ns for path in store.root.glob("*.json")}
    records = run_sweep(configs, store, progress=False)
    assert [record["id"] for record in records] == [config.run_id for config in configs]
    assert {path.name: path.stat().st_mtime_ns for path in store.root.glob("*.json") if path.name in stamps} == stamps
    frame = store.dataframe()
    assert len(frame) == 4 and set(frame["optimizer"]) == {"sgd", "adam"} and set(frame["lr"]) == {0.01, 0.1}


def test_a_bad_configuration_in_a_sweep_fails_before_anything_trains(tmp_path):
    store = ResultsStore(tmp_path / "store")
    with pytest.raises(ValueError, match="invalid lr -0.1"):
        run_sweep(expand_grid(dict(num_epochs=1, **TINY), optimizer=["sgd"], lr=[0.1, -0.1]), store, progress=False)
    assert not store.root.exists()


def test_run_ids_are_stable_and_complete_defaults():
    explicit = RunConfig(optimizer="adam", num_epochs=2, hyperparameters={"lr": 0.001, "betas": (0.9, 0.999)})
    implicit = RunConfig(optimizer="adam", num_epochs=2)
    assert explicit.run_id == implicit.run_id and explicit.run_id.startswith("adam-")
    assert RunConfig(optimizer="adam", num_epochs=3).run_id != implicit.run_id
    assert RunConfig.from_dict(implicit.to_dict()) == implicit


@pytest.mark.parametrize("settings, message", [
    (dict(optimizer="adamx"), "unknown optimizer 'adamx'.*adam"),
    (dict(optimizer="adam", hyperparameters={"lr": 0}), "invalid lr 0"),
    (dict(optimizer="adam", hyperparameters={"momentum": 0.9}), "unknown hyperparameter.*'momentum'.*allowed"),
    (dict(optimizer="adam", num_epochs=0), "invalid num_epochs 0"),
    (dict(optimizer="adam", batch_size=-1), "invalid batch_size -1"),
    (dict(optimizer="adam", dataset="imagenet"), "unknown dataset 'imagenet'"),
    (dict(optimizer="adam", model="resnet9"), "unknown model 'resnet9'"),
    (dict(optimizer="adam", scheduler="step"), "unknown scheduler 'step'.*multistep"),
    (dict(optimizer="adam", num_folds=1, fold=0), r"invalid num_folds 1: cross-validation needs .* >= 2"),
    (dict(optimizer="adam", num_folds=4), r"invalid fold None: .* from 0 to 3"),
    (dict(optimizer="adam", fold=2), r"invalid num_folds None"),
    (dict(optimizer="adam", num_folds=4, fold=4), r"invalid fold 4: .* from 0 to 3"),
    (dict(optimizer="adam", num_folds=4, fold=0, validation_fraction=0.1), r"either a fold or a validation fraction"),
    (dict(optimizer="adam", metainit_steps=10), r"invalid metainit_steps 10 with init 'default'"),
    (dict(optimizer="adam", init="metainit", metainit_steps=0), r"invalid metainit_steps 0"),
])
def test_bad_settings_are_named_with_what_is_allowed(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**{"num_epochs": 1, **settings})


def test_a_hessian_step_leaves_no_reference_cycle_warning():
    import warnings

    import torch.nn.functional as F

    from optbench import optim, protocol

    model = torch.nn.Linear(4, 3)
    optimizer = optim.make_optimizer("adahessian", model.parameters(), lr=0.1)
    inputs, targets = torch.randn(8, 4), torch.arange(8) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        protocol.optimizer_step(optimizer, lambda: F.cross_entropy(model(inputs), targets), model)
    # the graph kept for the Hessian-vector product is gone with the gradients
    assert all(parameter.grad is None for parameter in model.parameters())


def test_a_run_on_a_held_out_split_names_its_metrics_validation_not_test():
    on_validation = train(RunConfig(optimizer="sgd", num_epochs=1, validation_fraction=0.2, **TINY), progress=False)
    on_test = train(RunConfig(optimizer="sgd", num_epochs=1, **TINY), progress=False)
    row, test_row = on_validation["epochs"][0], on_test["epochs"][0]
    assert {"validation_loss", "validation_accuracy", "validation_error"} <= set(row) and not any(key.startswith("test_") for key in row)
    assert {"test_loss", "test_accuracy", "test_error"} <= set(test_row) and not any(key.startswith("validation_") for key in test_row)
    assert row["validation_error"] == pytest.approx(1 - row["validation_accuracy"])
