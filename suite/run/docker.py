"""`--runtime docker`: each cell runs inside its GPU generation's pinned image.

Host side (`DockerRuntime`, on the shared lifecycle of suite/run/runtime.py): `docker run` the image with the
in-cell entry point (`python -m suite.run.incell --cell <cell dir>/cell.json --out <cell dir>`), and read back the
`result.json` it writes into the mounted cell directory. Telemetry and result building happen inside, in the
host runtime, exactly as for `--runtime host`.

Every host path the cell names is mounted at the SAME path inside the container: the cell's command already
holds absolute paths (`Cell.paths`: metrics file, validation dumps, data files, model directory) and stays valid.
The cell directory (and the metrics / validation locations) are writable; inputs are read-only.

Security: `--user <host uid>:<gid>` (never root: a root caller runs as the image's unprivileged user),
no `--privileged`, `--security-opt no-new-privileges`; secrets travel by NAME only (`-e HF_TOKEN`: docker
copies the value from its own environment), so no value ever appears on a command line or in `--dry-run`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from suite.containers.build import image_tag
from suite.containers.settings import load_settings
from suite.errors import InputError
from suite.models.paths import cache_root
from suite.plan.cell import Cell
from suite.results.io import try_read_result
from suite.results.schema import Result
from suite.run import cellenv
from suite.run.files import CELL_FILE, RESULT_FILE
from suite.run.options import RuntimeOptions, split_list
from suite.run.runtime import Job, NoResult, NotRun, Runtime, State, StepCallback, Stopped
from suite.telemetry.watch import MetricsWatcher

CONTAINER_LOG = "container.log"
INCELL = ("python", "-m", "suite.run.incell")
IMAGE_UID = "1001:1001"  # the image's unprivileged user (containers/Dockerfile.in)


@dataclass(frozen=True)
class DockerOptions(RuntimeOptions):
    image: str = ""  # image reference; default: the identity tag this checkout builds for the cell's generation
    allow_unpinned: bool = False  # accept a default image whose base digest is still pending
    docker: str = "docker"  # client executable (podman works where its CLI is docker-compatible)
    shm_size: str = ""  # only used with an ipc mode other than host; default: the generation's setting
    ipc: str = "host"
    network: str = ""  # e.g. host for multi-NIC NCCL setups; default: docker's bridge
    forward_env: str = ""  # extra names / globs to pass by name, comma separated (added to cellenv.FORWARD_ENV)
    mounts: str = ""  # extra host paths, comma separated, mounted at the same path; suffix :rw for writable
    stop_grace_s: float = 30.0  # SIGINT -> docker stop spacing: lets the cell record its partial result
    timeout_margin_s: float = 300.0  # host-side backstop beyond the in-cell timeout (image start, teardown)
    poll_s: float = 0.5


# -- engine detection -----------------------------------------------------------------------------------
def docker_available(
    docker: str = "docker",
    *,
    timeout_s: float = 10.0,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> bool:
    """True when a Docker engine answers (`docker info`), not merely when the client is installed: the run
    CLI defaults to `--runtime docker` only then."""
    if shutil.which(docker) is None:
        return False
    try:
        proc = runner(
            [docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def default_runtime(requested: str | None, *, available: Callable[[], bool] = docker_available) -> tuple[str, str]:
    """(runtime, why) for `grpo-suite run`: what the user asked for, else docker when an engine is
    reachable, else host. The reason is for the user: say which was chosen."""
    if requested:
        return requested, f"--runtime {requested} (asked for)"
    if available():
        return "docker", "runtime docker: a Docker engine is reachable (--runtime host to run here)"
    return "host", "runtime host: no Docker engine reachable"


# -- pure command construction ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    path: str
    writable: bool = False

    def arg(self) -> str:
        return f"type=bind,source={self.path},target={self.path}" + ("" if self.writable else ",readonly")


def host_inputs(
    paths: Iterable[str],
    *,
    exists: Callable[[str], bool] = os.path.exists,
    is_dir: Callable[[str], bool] = os.path.isdir,
) -> list[str]:
    """The host directories to mount for the paths a cell reads: a directory itself, a file's parent.
    Paths that do not exist on the host are left out (they are outputs, or the run fails visibly)."""
    out = []
    for p in paths:
        if not exists(p):
            continue
        d = p if is_dir(p) else os.path.dirname(p)
        if d and d != "/":
            out.append(os.path.normpath(d))
    return out


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def merge_mounts(mounts: Iterable[Mount]) -> list[Mount]:
    """Deduplicated, sorted; a path under another mount is dropped when that mount already gives it the
    same or more access (writable covers read-only). A read-only parent keeps a writable child."""
    ms = sorted({(os.path.normpath(m.path), m.writable) for m in mounts})
    writable = {p for p, w in ms if w}
    chosen = [(p, w) for p, w in ms if w or p not in writable]
    out = []
    for p, w in chosen:
        covered = any(q != p and _inside(p, q) and (wq or not w) for q, wq in chosen)
        if not covered:
            out.append(Mount(p, w))
    return out


def check_mount_path(path: str) -> None:
    if not os.path.isabs(path):
        raise InputError(f"mount path {path!r} is not absolute", field="--runtime docker")
    if "," in path or '"' in path or "\n" in path:
        # --mount is a CSV field list: such a path would be split or misquoted.
        raise InputError(
            f"mount path {path!r} contains ',', '\"' or a newline, which docker --mount cannot carry; move it",
            field="--runtime docker",
        )


def gpus_arg(gpus: Sequence[int] | None) -> str:
    """`--gpus` value: the device list is quoted because docker splits this option's value on commas."""
    if gpus is None:
        return "all"
    if not gpus:
        raise InputError("empty GPU list", field="--gpus")
    return '"device=' + ",".join(str(g) for g in gpus) + '"'


def container_name(cell: Cell, token: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cell.full_id).strip("-.")[:80]
    return f"grpo-suite-{slug}-{token}"


def docker_command(
    cell: Cell,
    *,
    image: str,
    cell_dir: Path,
    gpus: Sequence[int] | None,
    user: str,
    mounts: Sequence[Mount] = (),
    env_names: Sequence[str] = (),
    env_values: Mapping[str, str] | None = None,
    name: str | None = None,
    timeout_s: float | None = None,
    ipc: str = "host",
    shm_size: str = "32g",
    network: str = "",
    docker: str = "docker",
) -> list[str]:
    """The exact `docker run` for one cell. `env_values` must hold no secrets (they are printed by
    --dry-run and visible in `ps`): secrets go in `env_names`, passed by name only."""
    cell_dir = Path(cell_dir)
    cmd = [docker, "run", "--rm", "--init", "--pull", "never"]
    if name:
        cmd += ["--name", name]
    cmd += ["--label", f"dev.grpo-suite.cell={cell.full_id}"]
    cmd += ["--gpus", gpus_arg(gpus)]
    cmd += [f"--ipc={ipc}"]
    if ipc != "host":
        # With --ipc=host /dev/shm is the host's, and docker ignores --shm-size (podman refuses the pair).
        cmd += ["--shm-size", shm_size]
    cmd += ["--ulimit", "memlock=-1", "--ulimit", "stack=67108864"]
    cmd += ["--user", user, "--security-opt", "no-new-privileges"]
    if network:
        cmd += ["--network", network]
    for m in merge_mounts([Mount(str(cell_dir), True), *mounts]):
        check_mount_path(m.path)
        cmd += ["--mount", m.arg()]
    for k, v in sorted((env_values or {}).items()):
        cmd += ["--env", f"{k}={v}"]
    for k in sorted(set(env_names) - set(env_values or {})):
        cmd += ["--env", k]
    cmd += ["--workdir", str(cell_dir)]
    cmd += [image, *INCELL, "--cell", str(cell_dir / CELL_FILE), "--out", str(cell_dir), "--runtime-name", "docker"]
    if timeout_s is not None:
        cmd += ["--timeout", f"{timeout_s:g}"]
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    return shlex.join(cmd)


def host_user(*, getuid: Callable[[], int] = os.getuid, getgid: Callable[[], int] = os.getgid) -> str:
    """`uid:gid` of the caller, so files in the cell directory belong to them; root maps to the image's
    unprivileged user instead of running the cell as root."""
    uid, gid = getuid(), getgid()
    return IMAGE_UID if uid == 0 else f"{uid}:{gid}"


def image_id(
    image: str, *, docker: str = "docker", runner: Callable[..., subprocess.CompletedProcess] = subprocess.run
) -> str | None:
    """Registry digest (`repo@sha256:...`) when the image came from a registry, else its local id
    (`sha256:...`); None when the engine does not have it."""
    try:
        proc = runner(
            [docker, "image", "inspect", "--format", "{{json .RepoDigests}} {{.Id}}", image],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    digests_json, _, iid = proc.stdout.strip().rpartition(" ")
    try:
        digests = json.loads(digests_json) if digests_json else []
    except json.JSONDecodeError:
        digests = []
    return digests[0] if digests else (iid or None)


# -- the runtime ------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class DockerJob(Job):
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    watcher: MetricsWatcher


class DockerRuntime(Runtime[DockerJob]):
    name = "docker"
    options_type = DockerOptions
    pins_gpus = True
    max_nodes = 1
    stale = (CONTAINER_LOG,)
    options: DockerOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.extra_mounts = [_parse_mount(s) for s in split_list(self.options.mounts)]

    @property
    def deadline_margin_s(self) -> float:
        return self.options.timeout_margin_s

    # -- what to run ------------------------------------------------------------------------------------
    def image_for(self, cell: Cell) -> str:
        if self.options.image:
            return self.options.image
        return image_tag(cell.gpu, allow_unpinned=self.options.allow_unpinned or self.options.dry_run)

    def _settings_shm(self, gen: str) -> str:
        if self.options.shm_size:
            return self.options.shm_size
        try:
            return str(load_settings(gen).run.get("shm_size", "32g"))
        except InputError:
            return "32g"

    def mounts_for(self, cell: Cell, cell_dir: Path) -> list[Mount]:
        paths = cell.paths
        mounts = [Mount(str(cell_dir), True), Mount(str(cellenv.metrics_path(cell, cell_dir).parent), True)]
        if paths.validation_dir is not None:
            v = paths.validation_dir
            mounts.append(Mount(str(v if v.exists() else v.parent), True))
        mounts += [Mount(d, False) for d in host_inputs(map(str, paths.reads))]
        cache = cache_root()
        if cache.is_dir():
            mounts.append(Mount(str(cache), False))
        hf = hf_home()
        if hf.is_dir():
            mounts.append(Mount(str(hf), True))  # hub downloads and the datasets cache write here
        mounts.extend(self.extra_mounts)
        return merge_mounts(mounts)

    def env_for(self, image: str, digest: str | None) -> dict[str, str]:
        env = {"GRPO_SUITE_IMAGE": image, "GRPO_SUITE_CACHE": str(cache_root()), "HF_HOME": str(hf_home())}
        if digest:
            env["GRPO_SUITE_IMAGE_DIGEST"] = digest  # the engine's id beats the baked identity string
        return env

    def command(
        self,
        cell: Cell,
        cell_dir: Path,
        *,
        gpus: Sequence[int] | None,
        timeout_s: float | None,
        digest: str | None = None,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> list[str]:
        o = self.options
        image = self.image_for(cell)
        names = cellenv.forwarded_env(os.environ if environ is None else environ, split_list(o.forward_env))
        return docker_command(
            cell,
            image=image,
            cell_dir=cell_dir,
            gpus=gpus,
            user=host_user(),
            mounts=self.mounts_for(cell, cell_dir),
            env_names=list(names),
            env_values=self.env_for(image, digest),
            name=name,
            timeout_s=timeout_s,
            ipc=o.ipc,
            shm_size=self._settings_shm(cell.gpu),
            network=o.network,
            docker=o.docker,
        )

    # -- the five steps -----------------------------------------------------------------------------------
    def describe(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None) -> str:
        return format_command(self.command(cell, cell_dir, gpus=gpus, timeout_s=timeout_s))

    def submit(
        self, cell: Cell, cell_dir: Path, *, timeout_s: float | None, gpus: list[int] | None, on_step: StepCallback
    ) -> DockerJob:
        image = self.image_for(cell)
        digest = image_id(image, docker=self.options.docker)
        env = {**cell.env, "GRPO_SUITE_IMAGE": image, **({"GRPO_SUITE_IMAGE_DIGEST": digest} if digest else {})}
        if digest is None:
            raise NotRun(
                "crash",
                f"image {image} is not available to the Docker engine; build it with "
                f"`nox -s build-{cell.gpu}` (python -m suite.containers build {cell.gpu}) or pass --image",
                env=env,
            )
        if host_user() == IMAGE_UID:
            cell_dir.chmod(0o777)  # root caller: the container's unprivileged user must write here
        name = container_name(cell, uuid.uuid4().hex[:8])
        cmd = self.command(cell, cell_dir, gpus=gpus, timeout_s=timeout_s, digest=digest, name=name)
        log = open(cell_dir / CONTAINER_LOG, "wb")  # noqa: SIM115 -- closed by fetch, when the container is gone
        log.write(f"$ {format_command(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        watcher = MetricsWatcher(cellenv.metrics_path(cell, cell_dir), on_step).start()
        return DockerJob(cell=cell, cell_dir=cell_dir, env=env, name=name, proc=proc, log=log, watcher=watcher)

    def status(self, job: DockerJob) -> State:
        return State.RUNNING if job.proc.poll() is None else State.DONE

    def stop(self, job: DockerJob) -> str | None:
        """SIGINT first (the in-cell entry point turns it into an orderly interrupt that writes the
        partial result), then `docker stop` (SIGTERM, SIGKILL after the grace)."""
        o = self.options
        if job.proc.poll() is None:
            subprocess.run([o.docker, "kill", "--signal", "INT", job.name], capture_output=True, timeout=30)
            try:
                job.proc.wait(timeout=o.stop_grace_s)
            except subprocess.TimeoutExpired:
                subprocess.run([o.docker, "stop", "--time", "10", job.name], capture_output=True, timeout=60)
        return "container stopped by the host"

    def fetch(self, job: DockerJob, stopped: Stopped | None) -> Result | NoResult:
        try:
            rc = job.proc.wait(timeout=None if stopped is None else self.options.stop_grace_s + 30)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            job.watcher.stop()
            job.log.close()
        result = try_read_result(job.cell_dir / RESULT_FILE)
        return result if result is not None else NoResult(_no_result_reason(rc, job.cell_dir), "crash", rc)


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def _parse_mount(spec: str) -> Mount:
    spec = spec.strip()
    path, mode = (spec[:-3], spec[-2:]) if spec.endswith((":rw", ":ro")) else (spec, "ro")
    check_mount_path(path)
    return Mount(os.path.normpath(path), mode == "rw")


def _no_result_reason(rc: int | None, cell_dir: Path) -> str:
    """Why no result.json came back. 125/126/127 are docker's own failures (engine, command, not found)."""
    tail = ""
    with contextlib.suppress(OSError):
        lines = (cell_dir / CONTAINER_LOG).read_text(errors="replace").strip().splitlines()
        tail = lines[-1][:300] if len(lines) > 1 else ""
    what = {
        125: "docker could not start the container",
        126: "the in-cell command could not be run",
        127: "the in-cell command was not found in the image",
    }.get(rc, "the container wrote no result")
    return f"{what} (exit {rc})" + (f": {tail}" if tail else "")
