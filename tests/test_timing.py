"""Interleaved step timing: its rows, its store, paired ratios, and bad input."""

import math

import numpy as np
import pandas as pd
import pytest

from optbench import timing
from optbench.config import RunConfig
from optbench.store import ResultsStore

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=128, batch_size=32, num_epochs=1)


def _configs():
    return {"SGD": RunConfig(optimizer="sgd", **TINY), "Adam": RunConfig(optimizer="adam", **TINY),
            "SVRG": RunConfig(optimizer="svrg", **TINY)}


def test_every_optimizer_is_timed_in_every_round_and_the_measurement_is_stored(tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "store")
    frame = timing.measure_step_seconds(_configs(), rounds=3, steps=2, store=store, progress=False)
    assert list(frame.columns) == ["label", "round", "seconds_per_step", "seconds_per_epoch"]
    assert sorted(frame.groupby("label")["round"].apply(list).to_dict().items()) == [
        ("Adam", [0, 1, 2]), ("SGD", [0, 1, 2]), ("SVRG", [0, 1, 2])]
    assert (frame["seconds_per_step"] > 0).all()
    # 128 examples in batches of 32: an epoch is 4 steps; SVRG's snapshot adds to its epoch
    plain = frame[frame["label"] != "SVRG"]
    assert np.allclose(plain["seconds_per_epoch"], 4 * plain["seconds_per_step"])
    svrg = frame[frame["label"] == "SVRG"]
    assert (svrg["seconds_per_epoch"] > 4 * svrg["seconds_per_step"]).all()
    assert len(list((store.root / "timings").glob("timing-*.json"))) == 1

    def no_measuring(*args, **kwargs):
        raise AssertionError("a stored measurement was taken again")

    monkeypatch.setattr(timing, "_Stepper", no_measuring)
    again = timing.measure_step_seconds(_configs(), rounds=3, steps=2, store=store, progress=False)
    pd.testing.assert_frame_equal(again, frame)


def test_ratios_are_paired_by_round():
    frame = pd.DataFrame({"label": ["a", "b", "a", "b"], "round": [0, 0, 1, 1], "seconds_per_epoch": [1.0, 2.0, 3.0, 3.0]})
    ratios = timing.ratio_to(frame, "a")
    assert ratios["ratio"].tolist() == [1.0, 2.0, 1.0, 1.0]
    table = timing.cost_table(frame, "a")
    assert table.loc["b", "ratio"] == pytest.approx(1.5) and table.loc["a", "ratio"] == 1.0
    assert (table.loc["b", "ratio_min"], table.loc["b", "ratio_max"]) == (1.0, 2.0)
    shown = timing.display_costs(table, "a")
    assert shown.columns.tolist() == ["optimizer", "seconds per epoch", "ratio to a", "ratio, range over rounds"]
    with pytest.raises(ValueError, match="unknown reference 'c'; measured: a, b"):
        timing.ratio_to(frame, "c")


def test_a_corrupt_stored_measurement_is_measured_again(tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = {"SGD": RunConfig(optimizer="sgd", **TINY)}
    path = store.root / "timings" / f"{timing.measurement_key(configs, 2, 1)}.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="ignoring stored measurement"):
        frame = timing.measure_step_seconds(configs, rounds=2, steps=1, store=store, progress=False)
    assert len(frame) == 2 and math.isfinite(frame["seconds_per_step"].sum())


@pytest.mark.parametrize("kwargs, message", [
    ({"rounds": 1}, "invalid rounds 1: rounds must be an integer >= 2"),
    ({"steps": 0}, "invalid steps 0: steps must be an integer >= 1"),
])
def test_bad_settings_are_named(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        timing.measure_step_seconds({"SGD": RunConfig(optimizer="sgd", **TINY)}, store=ResultsStore(tmp_path), **kwargs)
    with pytest.raises(ValueError, match="give at least one labelled configuration"):
        timing.measure_step_seconds({}, store=ResultsStore(tmp_path))


def test_a_hessian_every_k_pattern_is_timed_in_whole_patterns(tmp_path, monkeypatch):
    # one Hessian estimate in k steps: a median over single steps would report the cheap step, not the mean
    steps_taken = {}
    original = timing._Stepper.step

    def counting_step(self):
        steps_taken[self.period] = steps_taken.get(self.period, 0) + 1
        original(self)

    monkeypatch.setattr(timing._Stepper, "step", counting_step)
    configs = {"every 1": RunConfig(optimizer="adahessian", **TINY),
               "every 3": RunConfig(optimizer="adahessian", hyperparameters={"hessian_every": 3}, **TINY)}
    frame = timing.measure_step_seconds(configs, rounds=2, steps=2, store=ResultsStore(tmp_path), progress=False)
    # per round: a warm-up step, then 2 timed units of `period` steps
    assert steps_taken == {1: 2 * (1 + 2 * 1), 3: 2 * (1 + 2 * 3)}
    assert (frame["seconds_per_step"] > 0).all() and len(frame) == 4
