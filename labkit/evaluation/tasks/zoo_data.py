"""Loads the JSON-lines files beside this file for lm-evaluation-harness (``custom_dataset: !function ...``).

The harness calls these with the task's metadata as keyword arguments; they ignore them. Plain ``datasets``,
no hub: the files ship inside labkit."""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rows(name):
    with open(HERE / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _dataset(rows):
    import datasets

    return {"test": datasets.Dataset.from_list(rows)}


def load_mc(**kwargs):
    return _dataset(_rows("zoo_mc.jsonl"))


def load_ppl(**kwargs):
    return _dataset(_rows("zoo_ppl.jsonl"))
