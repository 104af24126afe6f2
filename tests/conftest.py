"""Shared fixtures. Keep this small: stage-specific helpers belong in their own test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MATRICES = REPO / "suite" / "matrices"


@pytest.fixture(scope="session")
def verl_validator():
    """One VerlValidator per test session: composing verl's Hydra config is the slow part, and the validator
    caches it per config-group choice and key-set shape."""
    pytest.importorskip("verl")
    from suite.plan.verl_check import VerlValidator

    return VerlValidator()


@pytest.fixture(scope="session")
def ray_cluster():
    """One real local Ray cluster (head + a worker node) for every test module that submits jobs: starting one
    takes tens of seconds, and the jobs are independent submissions."""
    from fakes_dist.cluster import LocalRayCluster, running

    with running(LocalRayCluster()) as cluster:
        yield cluster
