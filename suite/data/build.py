"""Make sure a cell's dataset exists on disk before verl is started."""

from __future__ import annotations

from pathlib import Path

from suite.data.paths import DATASETS, data_dir, dataset_files
from suite.errors import InputError

OFFLINE_SIZES = {"train": 2000, "test": 256}


def ensure_dataset(dataset: str, root: str | Path | None = None) -> tuple[str, str]:
    from suite.data import gsm8k

    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}", field="dataset")
    train, test = dataset_files(dataset, root)
    if Path(train).exists() and Path(test).exists():
        return train, test
    if dataset == "gsm8k":
        splits = gsm8k.load_gsm8k()
    else:
        splits = gsm8k.offline_gsm8k(OFFLINE_SIZES["train"], OFFLINE_SIZES["test"])
    gsm8k.write_gsm8k(data_dir(dataset, root), splits)
    return train, test
