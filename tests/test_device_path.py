"""The settings that change how a run computes (precision, compile_model) and the CUDA path of the training loop.

On the CPU: validation, unchanged run ids, bf16 through the CPU's autocast, compilation. The CUDA path has
its own suite, tests/cuda (``make test-cuda`` on a machine with a CUDA device).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from optbench import data, training
from optbench.config import LATE_SETTINGS, RunConfig
from optbench.runs import run
from optbench.store import ResultsStore
from optbench.training import build_model, prepare_data, train

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=200, batch_size=32)


def test_settings_added_later_leave_existing_run_ids_unchanged():
    # ids computed before precision and compile_model existed (commit b9a34b3)
    assert RunConfig(optimizer="adam", num_epochs=2).run_id == "adam-0931cfa3be6f"
    paper_padam = dict(optimizer="padam", num_epochs=200, dataset="cifar10", augment=True, seed=2,
                       hyperparameters={"lr": 0.1, "p": 0.125, "weight_decay": 5e-4})
    assert RunConfig(**paper_padam).run_id == "padam-0cf1d74a082f"
    assert RunConfig(**paper_padam, precision="fp32", compile_model=False).run_id == "padam-0cf1d74a082f"
    assert not set(LATE_SETTINGS) & set(RunConfig(**paper_padam).to_dict())


@pytest.mark.parametrize("setting", [{"precision": "bf16"}, {"compile_model": True}])
def test_a_late_setting_away_from_its_default_is_part_of_the_id_and_the_record(setting):
    config = RunConfig(optimizer="adam", num_epochs=2, **setting)
    assert config.run_id != RunConfig(optimizer="adam", num_epochs=2).run_id
    assert config.to_dict().items() >= setting.items()
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("settings, message", [
    (dict(precision="fp16"), r"invalid precision 'fp16': allowed fp32, bf16"),
    (dict(precision="BF16"), r"invalid precision 'BF16': allowed fp32, bf16"),
    (dict(compile_model="yes"), r"invalid compile_model 'yes': it must be true or false"),
    (dict(optimizer="adahessian", compile_model=True), r"invalid compile_model True for optimizer 'adahessian'.*compile_model false"),
])
def test_bad_precision_and_compile_settings_are_named_with_what_is_allowed(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**{"optimizer": "adam", "num_epochs": 1, **settings})


def test_compile_without_a_compiler_on_the_cpu_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "cpp_compiler", lambda: None)
    store = ResultsStore(tmp_path / "store")
    with pytest.raises(ValueError, match=r"invalid compile_model True on the CPU: .*C\+\+ compiler.*compile_model false"):
        run(RunConfig(optimizer="adam", num_epochs=1, compile_model=True, **TINY), store, device="cpu", progress=False)
    assert not store.root.exists()


def test_bf16_on_the_cpu_runs_the_forward_passes_under_the_cpus_autocast():
    # with lr → 0 the parameters stay put, so the epoch's losses are those of the initial model
    config = RunConfig(optimizer="sgd", num_epochs=1, hyperparameters={"lr": 1e-12, "momentum": 0.0}, precision="bf16", **TINY)
    row = train(config, device="cpu", progress=False)["epochs"][0]
    cpu = torch.device("cpu")
    dataset, images, labels, test_images, test_labels = prepare_data(config, cpu)
    torch.manual_seed(config.seed)
    model = build_model(config, dataset, cpu)

    def losses(split_images, split_labels):
        inputs = data.normalize(split_images, dataset.mean, dataset.std)
        with torch.no_grad():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(inputs)
            assert low.dtype == torch.bfloat16
            return F.cross_entropy(low.float(), split_labels).item(), F.cross_entropy(model(inputs), split_labels).item()

    train_bf16, train_fp32 = losses(images, labels)
    assert row["train_loss"] == pytest.approx(train_bf16, rel=1e-6)
    assert row["train_loss"] != pytest.approx(train_fp32, rel=1e-6)
    model.eval()
    test_bf16, test_fp32 = losses(test_images, test_labels)
    assert row["test_loss"] == pytest.approx(test_bf16, rel=1e-6)
    assert row["test_loss"] != pytest.approx(test_fp32, rel=1e-6)


def test_compile_model_on_the_cpu_compiles_and_agrees_with_the_eager_run():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager = train(RunConfig(optimizer="adam", num_epochs=1, **TINY), device="cpu", progress=False)["epochs"][0]
    compiled = train(RunConfig(optimizer="adam", num_epochs=1, compile_model=True, **TINY), device="cpu", progress=False)["epochs"][0]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-6)


def test_a_profiles_precision_reaches_every_chapters_runs_and_the_environment_wins(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from optbench import book
    from optbench.studies import STUDIES

    repository = Path(__file__).resolve().parents[1]
    for item in ("notebooks", "profiles"):
        shutil.copytree(repository / item, tmp_path / item)
    smoke = (tmp_path / "profiles" / "smoke.yaml").read_text()
    (tmp_path / "profiles" / "half.yaml").write_text("precision: bf16\n" + smoke)
    for variable in ("OPTBENCH_PRECISION", "OPTBENCH_COMPILE_MODEL"):
        monkeypatch.delenv(variable, raising=False)

    def planned(profile):
        return [config for name, values in book.load_profile(profile, tmp_path, check_data=False).items() if name in STUDIES
                for config in STUDIES[name].planned_runs(STUDIES[name].settings_from(values))]

    with book.profile_environment("smoke", tmp_path):
        plain = planned("smoke")
    assert {config.precision for config in plain} == {"fp32"}
    with book.profile_environment("half", tmp_path) as applied:
        runs = planned("half")
    assert applied == {"OPTBENCH_PRECISION": "bf16"} and {config.precision for config in runs} == {"bf16"}
    # a bf16 run is another run: none of them has an fp32 run's id
    assert not {config.run_id for config in runs} & {config.run_id for config in plain}
    # leaving the profile leaves the environment as it was: the next profile in this process is fp32 again
    assert "OPTBENCH_PRECISION" not in os.environ
    with book.profile_environment("smoke", tmp_path):
        assert {config.precision for config in planned("smoke")} == {"fp32"}
    monkeypatch.setenv("OPTBENCH_PRECISION", "fp32")  # the environment wins over the profile
    with book.profile_environment("half", tmp_path):
        assert {config.precision for config in planned("half")} == {"fp32"}
