"""nox sessions: thin wrappers over the `grpo-suite` CLI.

GPU sessions (`bench-<gen>`, `train-<gen>`) run in the current environment (`python=False`): on a GPU host
that is the pinned image or the environment that holds verl + vLLM. Extra CLI arguments pass through
after `--`, e.g. `nox -s bench-h100 -- --cells 'lora8-*' --parallel auto`.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
MATRICES = ROOT / "suite" / "matrices"
# GPU generation -> its main matrix (the seed recipes) for plan/bench/train/gate sessions.
GENERATIONS = {"h100": "h100.toml", "h20": "h20.toml"}

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "none"


def _suite(session: nox.Session, *args: str) -> None:
    session.run("python3", "-m", "suite", *args, *session.posargs)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """CPU test suite (GPU tests are marked and skipped without a GPU)."""
    session.run("python3", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", "suite", "tests", "noxfile.py", success_codes=[0, 1])


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """Build reports/ (index.md, index.html, results.json/csv) from the committed baselines. No GPU needed."""
    _suite(session, "report", "--baselines", "baselines", "--out", "reports")


for _gen, _matrix in GENERATIONS.items():

    def _plan(session: nox.Session, matrix: str = _matrix) -> None:
        _suite(session, "plan", str(MATRICES / matrix), "--strict")

    def _bench(session: nox.Session, matrix: str = _matrix) -> None:
        _suite(session, "run", str(MATRICES / matrix), "--profile", "bench")

    def _train(session: nox.Session, matrix: str = _matrix) -> None:
        _suite(session, "run", str(MATRICES / matrix), "--profile", "train")

    def _gate(session: nox.Session, gen: str = _gen) -> None:
        _suite(session, "gate", f"runs/{gen}", "--baselines", "baselines")

    nox.session(python=False, name=f"plan-{_gen}")(_plan)
    nox.session(python=False, name=f"bench-{_gen}")(_bench)
    nox.session(python=False, name=f"train-{_gen}")(_train)
    nox.session(python=False, name=f"gate-{_gen}")(_gate)
