"""Hand-made inputs the study tests share."""

import numpy as np
import pandas as pd


def interleaved_timing(seconds: dict[str, float], rounds: int = 6) -> pd.DataFrame:
    """A timing frame like :func:`optbench.timing.measure_step_seconds`'s: ``seconds`` per epoch by label, every
    label once per round; a busy moment slows every optimizer of its round alike, plus 1% noise of its own."""
    rng = np.random.default_rng(0)
    rows = []
    for round_number in range(rounds):
        load = 1 + 0.3 * rng.random()
        for label, value in seconds.items():
            rows.append({"label": label, "round": round_number, "seconds_per_step": value * load / 10,
                         "seconds_per_epoch": value * load * (1 + 0.01 * rng.random())})
    return pd.DataFrame(rows)
