"""The compute a build took, read from its run records (for the book's introduction)."""

from __future__ import annotations

from .store import ResultsStore


def compute_summary(store: ResultsStore) -> dict:
    """Runs, epochs, training seconds, devices, software and dates of every record in ``store``."""
    records = list(store.records())
    devices = sorted({f"{record['provenance']['device']} with {record['provenance']['num_threads']} threads" for record in records})
    software = sorted({f"torch {record['provenance']['torch_version']}, optbench {record['provenance']['optbench_version']}" for record in records})
    dates = sorted(record["provenance"]["date"][:10] for record in records)
    return {
        "runs": len(records),
        "diverged": sum(record["status"] == "diverged" for record in records),
        "epochs": sum(len(record["epochs"]) for record in records),
        "seconds": sum(record["epochs"][-1]["elapsed_seconds"] for record in records if record["epochs"]),
        "devices": "; ".join(devices) or "no device (no runs)",
        "software": "; ".join(software) or "no software (no runs)",
        "dates": (f"between {dates[0]} and {dates[-1]}" if dates[0] != dates[-1] else f"on {dates[0]}") if dates else "never",
    }
