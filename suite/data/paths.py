"""Where datasets live on disk (verl parquet files)."""

from __future__ import annotations

from pathlib import Path

from suite.models.paths import cache_root

DATASETS = ("gsm8k", "gsm8k-offline")


def data_dir(dataset: str, root: str | Path | None = None) -> Path:
    return Path(root) if root else cache_root() / "data" / dataset


def dataset_files(dataset: str, root: str | Path | None = None) -> tuple[str, str]:
    """(train parquet, test parquet) as verl's `data.train_files` / `data.val_files`."""
    d = data_dir(dataset, root)
    return str(d / "train.parquet"), str(d / "test.parquet")
