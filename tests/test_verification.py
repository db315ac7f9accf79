"""The verification table: every optimizer of ours has a row, agrees with its oracle, and a wrong update shows."""

from __future__ import annotations

import sys

import pytest
import torch

from optbench import optim, verification
from optbench.optim.atmo import ATMO, AdaptiveForm

DIFFERENCES = ["after 1 step", "after 10 steps", "after 100 steps"]


@pytest.fixture(scope="module")
def table():
    # module scope sets up before conftest's per-test single thread: ask for it here too
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    random_state = torch.get_rng_state()
    result = verification.verification_table()
    # a book cell that runs it leaves the notebook's random numbers alone
    assert torch.equal(torch.get_rng_state(), random_state)
    yield result
    torch.set_num_threads(threads)


def test_every_optimizer_of_ours_has_a_row(table):
    ours = {name for name in optim.available() if optim.spec(name).factory.__module__ != "optbench.optim.torch_builtin"}
    assert set(table["registry name"]) == ours
    assert ours >= {"padam", "atmo", "padam_sgd", "adahessian", "adasgd", "adabelief", "adam_scheduled_betas",
                    "lookahead", "svrg", "storm"}
    # ATMO twice: constant and dynamic weights
    assert list(table["registry name"]).count("atmo") == 2
    assert list(table.columns) == ["optimizer", "registry name", "oracle", *DIFFERENCES, "moved",
                                   "documented deviations"]
    assert table["oracle"].str.len().min() > 10 and table["documented deviations"].str.len().min() >= 4


def test_every_optimizer_agrees_with_its_oracle_after_moving(table):
    # float64 rounding over 100 steps; anything algorithmic is orders of magnitude larger (see below)
    assert (table[DIFFERENCES] < 1e-12).all().all(), table[["optimizer", *DIFFERENCES]]
    assert (table["moved"] > 0.1).all(), table[["optimizer", "moved"]]


def test_atmo_in_padam_sgd_form_is_caught(monkeypatch):
    """The bug of issue 11: ATMO's Adam branch with Padam's placement of the bias corrections."""

    def padam_form(self, group, step):
        beta1, beta2 = group["betas"]
        return AdaptiveForm(step_size=group["lr"] * (1 - beta2**step) ** 0.5 / (1 - beta1**step), scale=1.0,
                            eps=group["eps"], exponent=1.0)

    monkeypatch.setattr(ATMO, "adaptive_form", padam_form)
    rows = verification.verification_table(["atmo", "padam_sgd"]).set_index("optimizer")
    assert (rows.loc[rows["registry name"] == "atmo", "after 1 step"] > 1e-4).all()
    assert (rows.loc[rows["registry name"] == "padam_sgd", DIFFERENCES] < 1e-12).all().all()


def test_a_partial_power_left_out_is_caught(monkeypatch):
    """Padam and PADAM-SGD with (sqrt(v̂)+eps) instead of (sqrt(v̂)+eps)^(2p): the same shape, wrong steps."""
    monkeypatch.setattr("optbench.optim.padam.power_", lambda tensors, exponent: None)
    monkeypatch.setattr("optbench.optim.atmo.power_", lambda tensors, exponent: None)
    rows = verification.verification_table(["padam", "padam_sgd", "atmo"])
    wrong = rows[rows["registry name"].isin(["padam", "padam_sgd"])]
    assert (wrong["after 1 step"] > 1e-3).all(), wrong
    # ATMO's exponent is 1: no power to leave out, so it still agrees
    assert (rows.loc[rows["registry name"] == "atmo", DIFFERENCES] < 1e-12).all().all()


def test_unknown_name_and_missing_oracle_package_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"no verification for 'adam'; available: adabelief, "):
        verification.verification_table(["padam", "adam"])
    monkeypatch.setitem(sys.modules, "torch_optimizer", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"needs torch-optimizer 0\.3\.0.*optbench\[test\]"):
        verification.verification_table()
