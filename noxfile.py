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
# Generations with a pinned container image (containers/<gen>/).
CONTAINER_GENERATIONS = ("a100", "b200", "h100", "h20", "h200")

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "none"


def _suite(session: nox.Session, *args: str) -> None:
    session.run("python3", "-m", "suite", *args, *session.posargs, external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """CPU test suite (GPU tests are marked and skipped without a GPU)."""
    session.run("python3", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff's rules and ruff's formatting: either one off fails the session."""
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "--diff", "suite", "tests", "noxfile.py")


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """Build reports/ (index.md, index.html, results.json/csv) from the committed baselines, with the shipped
    matrices that have no result yet as the planners predict them and the speed planner checked against every
    measured run. No GPU needed."""
    _suite(
        session,
        "report",
        "--baselines",
        "baselines",
        "--out",
        "reports",
        "--plan",
        "suite/matrices",
        "--evidence",
        "baselines/evidence",
        "--speed",
    )


@nox.session(python=False)
def lock(session: nox.Session) -> None:
    """Regenerate containers/<gen>/requirements*.lock with hashes (uv; needs PyPI), re-render Dockerfiles."""
    session.run("python3", "-m", "suite.containers", "lock", *session.posargs)


@nox.session(python=False, name="lock-images")
def lock_images(session: nox.Session) -> None:
    """Fill containers/images.lock with base-image digests (skopeo or docker buildx; needs the registry)."""
    session.run("python3", "-m", "suite.containers", "lock-images", *session.posargs)


for _cgen in CONTAINER_GENERATIONS:

    def _build(session: nox.Session, gen: str = _cgen) -> None:
        """Build the generation's pinned image (refuses an unpinned base unless --allow-unpinned; `-- --base local`
        makes the base here instead, no registry needed)."""
        session.run("python3", "-m", "suite.containers", "build", gen, *session.posargs)

    nox.session(python=False, name=f"build-{_cgen}")(_build)


for _gen, _matrix in GENERATIONS.items():

    def _plan(session: nox.Session, matrix: str = _matrix) -> None:
        """Plan the generation's matrix, validate every cell against verl, predict memory (no GPU)."""
        _suite(session, "plan", str(MATRICES / matrix), "--predict-memory")

    def _doctor(session: nox.Session, matrix: str = _matrix) -> None:
        """Check that this environment imports what the matrix's cells need (before any GPU time; exit 2 if not)."""
        _suite(session, "doctor", str(MATRICES / matrix))

    # Results go to runs/<gen>/<profile>: the gate pools every result under the folder it is given.
    def _bench(session: nox.Session, matrix: str = _matrix, gen: str = _gen) -> None:
        """Run the matrix with the bench profile (GPU host; extra arguments after --)."""
        _suite(session, "run", str(MATRICES / matrix), "--profile", "bench", "--out", f"runs/{gen}/bench")

    def _train(session: nox.Session, matrix: str = _matrix, gen: str = _gen) -> None:
        """Run the matrix with the train profile: validation before and after, GSM8K accuracy."""
        _suite(session, "run", str(MATRICES / matrix), "--profile", "train", "--out", f"runs/{gen}/train")

    def _gate(session: nox.Session, gen: str = _gen) -> None:
        """Gate the latest bench results of the generation against baselines/ (exit 1 on a regression)."""
        _suite(session, "gate", f"runs/{gen}/bench", "--baselines", "baselines", "--format", "markdown")

    nox.session(python=False, name=f"plan-{_gen}")(_plan)
    nox.session(python=False, name=f"doctor-{_gen}")(_doctor)
    nox.session(python=False, name=f"bench-{_gen}")(_bench)
    nox.session(python=False, name=f"train-{_gen}")(_train)
    nox.session(python=False, name=f"gate-{_gen}")(_gate)
