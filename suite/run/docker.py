"""`--runtime docker`: each cell runs inside its GPU generation's pinned image.

Host side (`DockerRuntime.run_cell`): write `<cell dir>/cell.json`, `docker run` the image with the in-cell
entry point (`python -m suite.run.incell --cell <cell dir>/cell.json --out <cell dir>`), and read back the
`result.json` it writes into the mounted cell directory. Telemetry and result building happen inside, in the
host runtime, exactly as for `--runtime host`.

Every host path the cell names is mounted at the SAME path inside the container: the cell's argv already
holds absolute paths (metrics file, validation dumps, data files, model directory) and stays valid unchanged.
The cell directory (and the metrics / validation locations) are writable; inputs are read-only.

Security: `--user <host uid>:<gid>` (never root: a root caller runs as the image's unprivileged user),
no `--privileged`, `--security-opt no-new-privileges`; secrets travel by NAME only (`-e HF_TOKEN`: docker
copies the value from its own environment), so no value ever appears on a command line or in `--dry-run`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.errors import InputError
from suite.plan.cell import Cell
from suite.run.runtime import CELL_FILE, LOG_FILE, RESULT_FILE, StepCallback, unrun_status

CONTAINER_LOG = "container.log"
INCELL = ("python", "-m", "suite.run.incell")
IMAGE_UID = "1001:1001"  # the image's unprivileged user (containers/Dockerfile.in)

# Forwarded by name when set on the host: fabric settings must match the host's network, tokens are needed by
# verl's workers and hub downloads, VLLM_*/TORCH_* tune the run the user asked for.
DEFAULT_FORWARD = ("NCCL_*", "GLOO_*", "UCX_*", "TP_SOCKET_IFNAME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                   "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "WANDB_API_KEY", "WANDB_BASE_URL",
                   "WANDB_MODE", "VLLM_*", "TORCH_NCCL_*")

OPTIONS: dict[str, Any] = {
    "image": "",  # image reference; default: the identity tag this checkout builds for the cell's generation
    "dry_run": False,
    "allow_unpinned": False,  # accept a default image whose base digest is still pending
    "docker": "docker",  # client executable (podman works where its CLI is docker-compatible)
    "shm_size": "",  # only used with an ipc mode other than host; default: the generation's setting
    "ipc": "host",
    "network": "",  # e.g. host for multi-NIC NCCL setups; default: docker's bridge
    "forward_env": "",  # extra names / globs to pass by name, comma separated (added to DEFAULT_FORWARD)
    "mounts": "",  # extra host paths, comma separated, mounted at the same path; suffix :rw for writable
    "stop_grace_s": 30.0,  # SIGINT -> docker stop spacing: lets the cell record its partial result
    "timeout_margin_s": 300.0,  # host-side backstop beyond the in-cell timeout (image start, teardown)
    "poll_s": 0.5,
}


# -- engine detection -----------------------------------------------------------------------------------
def docker_available(docker: str = "docker", *, timeout_s: float = 10.0,
                     runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> bool:
    """True when a Docker engine answers (`docker info`), not merely when the client is installed: the run
    CLI defaults to `--runtime docker` only then."""
    if shutil.which(docker) is None:
        return False
    try:
        proc = runner([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                      timeout=timeout_s)
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


_PATHLIKE = re.compile(r"""(?:^|[\[,'"\s])(/[^,'"\]\s]+)""")


def argv_paths(argv: Sequence[str]) -> list[str]:
    """Absolute paths in Hydra overrides (`k=/p`, `k=['/a','/b']`) and bare arguments of the command."""
    out: list[str] = []
    for a in argv[1:]:
        _, sep, value = a.partition("=")
        for m in _PATHLIKE.finditer(value if sep else a):
            out.append(m.group(1))
    return out


def host_inputs(paths: Iterable[str], *, exists: Callable[[str], bool] = os.path.exists,
                is_dir: Callable[[str], bool] = os.path.isdir) -> list[str]:
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
        raise InputError(f"mount path {path!r} contains ',', '\"' or a newline, which docker --mount "
                         "cannot carry; move it", field="--runtime docker")


def gpus_arg(gpus: Sequence[int] | None) -> str:
    """`--gpus` value: the device list is quoted because docker splits this option's value on commas."""
    if gpus is None:
        return "all"
    if not gpus:
        raise InputError("empty GPU list", field="--gpus")
    return '"device=' + ",".join(str(g) for g in gpus) + '"'


def forwarded_names(environ: Mapping[str, str], patterns: Iterable[str]) -> list[str]:
    pats = [p.strip() for p in patterns if p.strip()]
    return sorted(k for k in environ if any(fnmatch.fnmatchcase(k, p) for p in pats))


def container_name(cell: Cell, token: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", cell.full_id).strip("-.")[:80]
    return f"grpo-suite-{slug}-{token}"


def docker_command(cell: Cell, *, image: str, cell_dir: Path, gpus: Sequence[int] | None,
                   user: str, mounts: Sequence[Mount] = (), env_names: Sequence[str] = (),
                   env_values: Mapping[str, str] | None = None, name: str | None = None,
                   timeout_s: float | None = None, ipc: str = "host", shm_size: str = "32g",
                   network: str = "", docker: str = "docker") -> list[str]:
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
    cmd += [image, *INCELL, "--cell", str(cell_dir / CELL_FILE), "--out", str(cell_dir),
            "--runtime-name", "docker"]
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


def image_id(image: str, *, docker: str = "docker",
             runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str | None:
    """Registry digest (`repo@sha256:...`) when the image came from a registry, else its local id
    (`sha256:...`); None when the engine does not have it."""
    try:
        proc = runner([docker, "image", "inspect", "--format", "{{json .RepoDigests}} {{.Id}}", image],
                      capture_output=True, text=True, timeout=30)
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
class DockerRuntime:
    name = "docker"

    def __init__(self, **options: Any) -> None:
        from suite.run.ray_job import coerce_options

        o = coerce_options(OPTIONS, options, self.name)
        self.image: str = o["image"]
        self.dry_run: bool = o["dry_run"]
        self.allow_unpinned: bool = o["allow_unpinned"]
        self.docker: str = o["docker"]
        self.shm_size: str = o["shm_size"]
        self.ipc: str = o["ipc"]
        self.network: str = o["network"]
        self.forward = [*DEFAULT_FORWARD, *(p for p in str(o["forward_env"]).split(",") if p.strip())]
        self.extra_mounts = [_parse_mount(s) for s in str(o["mounts"]).split(",") if s.strip()]
        self.stop_grace_s: float = o["stop_grace_s"]
        self.timeout_margin_s: float = o["timeout_margin_s"]
        self.poll_s: float = o["poll_s"]
        self._proc: subprocess.Popen | None = None
        self._name: str | None = None
        self._interrupted = False

    # -- what to run ------------------------------------------------------------------------------------
    def image_for(self, cell: Cell) -> str:
        if self.image:
            return self.image
        from suite.containers.build import image_tag

        return image_tag(cell.gpu, allow_unpinned=self.allow_unpinned or self.dry_run)

    def _settings_shm(self, gen: str) -> str:
        if self.shm_size:
            return self.shm_size
        try:
            from suite.containers.settings import load_settings

            return str(load_settings(gen).run.get("shm_size", "32g"))
        except InputError:
            return "32g"

    def mounts_for(self, cell: Cell, cell_dir: Path) -> list[Mount]:
        from suite.models.paths import cache_root
        from suite.run import cellenv

        mounts = [Mount(str(cell_dir), True)]
        metrics = cellenv.metrics_path(cell.argv, cell.env, cell_dir)
        mounts.append(Mount(str(metrics.parent), True))
        validation = cellenv.validation_dir(cell.argv)
        if validation is not None:
            # The planner quotes values holding Hydra-special characters ('+'): "'/a/b'" names /a/b.
            validation = Path(str(validation).strip("'\""))
            mounts.append(Mount(str(validation.parent if not validation.exists() else validation), True))
        for d in host_inputs(argv_paths(cell.argv)):
            mounts.append(Mount(d, False))
        cache = cache_root()
        if cache.is_dir():
            mounts.append(Mount(str(cache), False))
        hf = hf_home()
        if hf.is_dir():
            mounts.append(Mount(str(hf), True))  # hub downloads and the datasets cache write here
        mounts.extend(self.extra_mounts)
        return merge_mounts(mounts)

    def env_for(self, image: str, digest: str | None) -> dict[str, str]:
        from suite.models.paths import cache_root

        env = {"GRPO_SUITE_IMAGE": image, "GRPO_SUITE_CACHE": str(cache_root()), "HF_HOME": str(hf_home())}
        if digest:
            env["GRPO_SUITE_IMAGE_DIGEST"] = digest  # the engine's id beats the baked identity string
        return env

    def command(self, cell: Cell, cell_dir: Path, *, gpus: Sequence[int] | None, timeout_s: float | None,
                digest: str | None = None, name: str | None = None,
                environ: Mapping[str, str] | None = None) -> list[str]:
        image = self.image_for(cell)
        environ = os.environ if environ is None else environ
        return docker_command(
            cell, image=image, cell_dir=cell_dir, gpus=gpus, user=host_user(),
            mounts=self.mounts_for(cell, cell_dir), env_names=forwarded_names(environ, self.forward),
            env_values=self.env_for(image, digest), name=name, timeout_s=timeout_s, ipc=self.ipc,
            shm_size=self._settings_shm(cell.gpu), network=self.network, docker=self.docker)

    # -- the contract -----------------------------------------------------------------------------------
    def interrupt(self) -> None:
        self._interrupted = True
        self._stop_container()

    def run_cell(self, cell: Cell, cell_dir: Path, *, timeout_s: float | None = None,
                 gpus: list[int] | None = None, on_step: StepCallback | None = None) -> Any:
        cell_dir = Path(cell_dir).absolute()
        if unrun := unrun_status(cell):
            return self._record(cell, cell_dir, *unrun)
        if cell.nnodes > 1:
            return self._record(cell, cell_dir, "invalid", "the docker runtime runs one node; use --runtime "
                                "ray or slurm for multi-node cells")
        if self.dry_run:
            cmd = self.command(cell, cell_dir, gpus=gpus, timeout_s=timeout_s)
            print(format_command(cmd), flush=True)
            return self._result(cell, "skipped", "dry run", image=cmd[cmd.index(INCELL[0]) - 1])
        if self._interrupted:
            raise KeyboardInterrupt
        image = self.image_for(cell)
        digest = image_id(image, docker=self.docker)
        cell_dir.mkdir(parents=True, exist_ok=True)
        for stale in (RESULT_FILE, LOG_FILE, CONTAINER_LOG):
            (cell_dir / stale).unlink(missing_ok=True)
        if digest is None:
            return self._record(cell, cell_dir, "crash", f"image {image} is not available to the Docker "
                                f"engine; build it with `nox -s build-{cell.gpu}` (python -m suite.containers "
                                f"build {cell.gpu}) or pass --image", image=image)
        from suite.results.io import write_text_atomic

        write_text_atomic(cell_dir / CELL_FILE, json.dumps(cell.to_dict(), indent=2, sort_keys=True) + "\n")
        if host_user() == IMAGE_UID:
            cell_dir.chmod(0o777)  # root caller: the container's unprivileged user must write here
        self._name = container_name(cell, uuid.uuid4().hex[:8])
        cmd = self.command(cell, cell_dir, gpus=gpus, timeout_s=timeout_s, digest=digest, name=self._name)
        return self._execute(cell, cell_dir, cmd, image, digest, timeout_s, on_step)

    def _execute(self, cell: Cell, cell_dir: Path, cmd: list[str], image: str, digest: str,
                 timeout_s: float | None, on_step: StepCallback | None) -> Any:
        from suite.results.io import try_read_result
        from suite.run import cellenv
        from suite.telemetry.watch import MetricsWatcher

        watcher = MetricsWatcher(cellenv.metrics_path(cell.argv, cell.env, cell_dir), on_step).start() \
            if on_step else None
        deadline = time.monotonic() + timeout_s + self.timeout_margin_s if timeout_s else None
        status_override: tuple[str, str] | None = None
        with open(cell_dir / CONTAINER_LOG, "wb") as log:
            log.write(f"$ {format_command(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                while self._proc.poll() is None:
                    if deadline is not None and time.monotonic() > deadline:
                        status_override = ("timeout", f"container still running {self.timeout_margin_s:g} s "
                                           "after the cell's timeout; stopped by the host")
                        self._stop_container()
                        break
                    time.sleep(self.poll_s)
                rc = self._proc.wait()
            except KeyboardInterrupt:
                self._stop_container()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=self.stop_grace_s + 30)
                self._collect(cell, cell_dir, image, digest, "interrupted", "interrupted by the user")
                raise
            finally:
                if watcher is not None:
                    watcher.stop()
        result = try_read_result(cell_dir / RESULT_FILE)
        if result is not None and status_override is None:
            return result
        if status_override is not None:
            return self._collect(cell, cell_dir, image, digest, *status_override)
        return self._collect(cell, cell_dir, image, digest, "crash", _no_result_reason(rc, cell_dir))

    def _collect(self, cell: Cell, cell_dir: Path, image: str, digest: str | None, status: str,
                 reason: str) -> Any:
        """The container's own result when it wrote one (an interrupted cell records itself), else ours."""
        from suite.results.io import try_read_result

        result = try_read_result(cell_dir / RESULT_FILE)
        if result is not None and (result.status == status or status == "interrupted"):
            return result
        return self._record(cell, cell_dir, status, reason, image=image, digest=digest)

    def _stop_container(self) -> None:
        """SIGINT first (the in-cell entry point turns it into an orderly interrupt that writes the
        partial result), then `docker stop` (SIGTERM, SIGKILL after the grace)."""
        if not self._name or self._proc is None or self._proc.poll() is not None:
            return
        subprocess.run([self.docker, "kill", "--signal", "INT", self._name], capture_output=True, timeout=30)
        try:
            self._proc.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            subprocess.run([self.docker, "stop", "--time", "10", self._name], capture_output=True,
                           timeout=60)

    def _result(self, cell: Cell, status: str, reason: str | None, *, image: str | None = None,
                digest: str | None = None) -> Any:
        from suite.results import provenance as prov
        from suite.results.build import CellInfo, Observation, build_result

        env = {**cell.env, **({"GRPO_SUITE_IMAGE": image} if image else {}),
               **({"GRPO_SUITE_IMAGE_DIGEST": digest} if digest else {})}
        provenance = prov.collect(argv=cell.argv, env=env, runtime=self.name, model_source=cell.model)
        # No samplers on this side: the in-container runner (incell -> host runtime) samples NVML and host memory
        # next to verl; a result made here (none came back) leaves those fields None.
        return build_result(CellInfo.from_cell(cell), Observation(status=status, reason=reason), provenance)

    def _record(self, cell: Cell, cell_dir: Path, status: str, reason: str | None, *,
                image: str | None = None, digest: str | None = None) -> Any:
        from suite.results.io import write_result

        result = self._result(cell, status, reason, image=image, digest=digest)
        cell_dir.mkdir(parents=True, exist_ok=True)
        write_result(cell_dir / RESULT_FILE, result)
        return result


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def _parse_mount(spec: str) -> Mount:
    spec = spec.strip()
    path, mode = (spec[:-3], spec[-2:]) if spec.endswith((":rw", ":ro")) else (spec, "ro")
    check_mount_path(path)
    return Mount(os.path.normpath(path), mode == "rw")


def _no_result_reason(rc: int, cell_dir: Path) -> str:
    """Why no result.json came back. 125/126/127 are docker's own failures (engine, command, not found)."""
    tail = ""
    with contextlib.suppress(OSError):
        lines = (cell_dir / CONTAINER_LOG).read_text(errors="replace").strip().splitlines()
        tail = lines[-1][:300] if len(lines) > 1 else ""
    what = {125: "docker could not start the container", 126: "the in-cell command could not be run",
            127: "the in-cell command was not found in the image"}.get(rc, "the container wrote no result")
    return f"{what} (exit {rc})" + (f": {tail}" if tail else "")
