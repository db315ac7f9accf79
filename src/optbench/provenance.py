"""The reproducibility appendix: every run of the book with its configuration, status, seconds and provenance,
the compute of each chapter, and the commands that re-execute a chapter.

Which runs belong to which chapter comes from the chapters' hand-overs (:mod:`optbench.chapter_results`);
the runs themselves from their records in the results store. A run shared by two chapters (the same
configuration) is listed under each and counted once in the book's total.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from .statistics import format_number
from .store import ResultsStore
from .summary import chapter_reference


def chapter_records(results: dict, store: ResultsStore) -> dict[str, list[dict]]:
    """Per chapter (name → its hand-over), the records of its runs; ``ValueError`` naming a run without one."""
    records = {}
    for name, result in results.items():
        loaded = [(run_id, store.load(run_id)) for run_id in result.run_ids]
        missing = [run_id for run_id, record in loaded if record is None]
        if missing:
            raise ValueError(f"chapter {name!r} lists run(s) {', '.join(missing[:3])} that have no intact record in {store.root}; "
                             "execute the chapter again")
        records[name] = [record for _, record in loaded]
    return records


def _seconds(record: dict) -> float:
    return float(record["epochs"][-1]["elapsed_seconds"]) if record["epochs"] else 0.0


def _grad_evals(record: dict) -> int:
    return int(record["epochs"][-1]["grad_evals"]) if record["epochs"] else 0


def compute_table(results: dict, records: dict[str, list[dict]]) -> pd.DataFrame:
    """Per chapter: runs, diverged runs, epochs, gradient evaluations and training time; a last row for the
    whole book counts each run once."""
    def row(chapter: str, runs: list[dict]) -> dict:
        seconds = sum(_seconds(record) for record in runs)
        return {"chapter": chapter, "runs": len(runs), "diverged": sum(record["status"] == "diverged" for record in runs),
                "epochs": sum(len(record["epochs"]) for record in runs),
                "gradient evaluations": f"{sum(_grad_evals(record) for record in runs):,}",
                "training seconds": format_number(seconds, 1), "training minutes": format_number(seconds / 60, 1)}

    rows = [row(chapter_reference(name, results[name].title), runs) for name, runs in records.items()]
    unique = {record["id"]: record for runs in records.values() for record in runs}
    rows.append(row("the book (each run once)", list(unique.values())))
    return pd.DataFrame(rows)


def configuration_parts(config: dict) -> dict[str, str]:
    """A run's configuration in three short phrases: the network with its options, the data, and the training
    (epochs, batch, seed and whatever else differs from a plain run: augmentation, scheduler, initialization)."""
    options = ", ".join(f"{key} {value}" for key, value in config["model_options"].items())
    data_parts = [config["dataset"]]
    if config.get("image_size"):
        data_parts.append(f"{config['image_size']}×{config['image_size']}")
    if config.get("max_train_examples"):
        data_parts.append(f"{config['max_train_examples']} training examples")
    if config.get("validation_fraction"):
        data_parts.append(f"validation split {config['validation_fraction']:g}")
    training = [f"{config['num_epochs']} epochs", f"batch {config['batch_size']}", f"seed {config['seed']}"]
    if config.get("augment"):
        training.append("augmented")
    if config.get("scheduler", "none") != "none":
        scheduler_options = ", ".join(f"{key} {_value(value)}" for key, value in config.get("scheduler_options", {}).items())
        training.append(f"scheduler {config['scheduler']}" + (f" ({scheduler_options})" if scheduler_options else ""))
    if config.get("init", "default") != "default":
        training.append(f"init {config['init']}")
    return {"network": f"{config['model']} ({options})" if options else config["model"], "data": ", ".join(data_parts),
            "training": ", ".join(training)}


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_value(item) for item in value) + ")"
    return str(value)


def provenance_text(provenance: dict) -> str:
    """Package version, git commit, torch version, device and threads of a record."""
    commit = (provenance.get("git_commit") or "no git commit")[:12]
    return (f"optbench {provenance['optbench_version']}, commit {commit}, torch {provenance['torch_version']}, "
            f"{provenance['device']} × {provenance['num_threads']} threads")


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: its id (which starts with the optimizer's registry name), network, data, training,
    hyperparameters, status, training seconds, and provenance with the date."""
    return pd.DataFrame([{
        "run": f"`{record['id']}`",
        **configuration_parts(record["config"]),
        "hyperparameters": ", ".join(f"{key} {_value(value)}" for key, value in record["config"]["hyperparameters"].items()),
        "status": record["status"] + (f" (epoch {record['diverged_epoch']})" if record["status"] == "diverged" else ""),
        "seconds": format_number(_seconds(record), 1),
        "provenance": f"{provenance_text(record['provenance'])}, {record['provenance']['date'][:10]}",
    } for record in records])


def commands_table(profile: str, studies: dict, pages: dict) -> pd.DataFrame:
    """Per notebook of the book: the command that re-executes it with this build's profile, and the parameters
    a profile (or papermill's ``-p``) can set for it."""
    rows = []
    for name, study in studies.items():
        parameters = ", ".join(f"`{field.name}`" for field in dataclasses.fields(study.settings))
        rows.append({"notebook": chapter_reference(name, study.title), "command": f"`optbench execute --profile {profile} --notebook {name}`",
                     "parameters": parameters})
    for name in pages:
        rows.append({"notebook": f"{{doc}}`{name} </book/{name}>`", "command": f"`optbench execute --profile {profile} --notebook {name}`",
                     "parameters": "`profile`"})
    return pd.DataFrame(rows)
