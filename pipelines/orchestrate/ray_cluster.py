"""What the Ray backend checks and sets up before a stage runs: Ray is installed, its address
answers, a local instance starts, no stage asks for more than a node has, and every node sees the
storage folder the stages write."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

from darla.errors import ConfigError
from darla.pipelines.orchestrate.tasks import Task
from darla.runtime import num_cores

logger = logging.getLogger(__name__)

INSTALL_HINT = "the ray backend needs Ray: pip install -e '.[ray]' (or pip install 'ray[default]>=2.10')"
NODE_CHECK_TIMEOUT = 120.0


def import_ray() -> Any:
    """The `ray` module, or a ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def gpus_for(task: Task) -> float:
    """1 when the task's config asks for a CUDA device (`device: cuda`), else 0. Ray shows the task
    only the GPU it reserved, so the stage sees it as `cuda` (`cuda:0`)."""
    return 1.0 if str(getattr(task.config, "device", "cpu")).startswith("cuda") else 0.0


def check_storage(tasks: list[Task], storage: Path) -> Path:
    """Every folder the tasks write or read lies under `storage` (resolved and returned)."""
    root = Path(storage).resolve()
    for task in tasks:
        for folder in (task.folder, *task.needs):
            path = Path(folder).resolve()
            if path != root and root not in path.parents:
                raise ConfigError(
                    f"stage {task.label} uses {folder}, outside the Ray storage folder {root}: every "
                    "Ray node reads and writes the run's folders there (a shared filesystem path); "
                    "put the run's --out under it, or set --storage to a folder that holds it"
                )
    return root


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Something answers at a cluster's address ('auto': the one `ray start` recorded on this
    machine), checked here because Ray retries a wrong address for many minutes."""
    if address.startswith("ray://"):
        return  # Ray Client: its server checks
    target: str | None = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address("auto")
        except (ImportError, AttributeError, TypeError, ValueError):  # Ray's internals moved: let it try
            return
        if target is None:
            raise ConfigError(
                "--address auto found no Ray cluster on this machine: start one with `ray start --head`, "
                "give its HOST:PORT, or leave --address empty for a local instance"
            )
    host, _, port = str(target).rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"the Ray address {address!r} is not 'auto' or HOST:PORT (e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"nothing answers at the Ray address {target!r} ({exc}): start the cluster's head with "
            "`ray start --head` (it prints its address), or leave --address empty for a local instance"
        ) from None


def probe_node(marker: str, token: str, cwd: str) -> dict[str, Any]:
    """What one node sees: the command's marker file in the storage folder, its working folder."""
    try:
        seen = Path(marker).read_text() == token
    except OSError:
        seen = False
    return {"host": socket.gethostname(), "storage": seen, "cwd": os.path.isdir(cwd)}


def connect(ray: Any, address: str, num_cpus: int | None) -> bool:
    """Connect to Ray: `address` '' starts a local instance of `num_cpus` CPUs (default: every core),
    'auto' or HOST:PORT joins a cluster; a process connected already keeps its connection. True
    when this call started the instance (its caller shuts it down)."""
    if ray.is_initialized():  # connected already (a notebook, a test session): use it as it is
        logger.info("running on this process's Ray connection (address and num_cpus are not used)")
        return False
    # ray.init replaces the SIGTERM handler with an exit: keep darla's, which stops the stages
    # with a checkpoint as Ctrl-C does (`sigterm_as_interrupt`)
    on_main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if on_main else None
    try:
        return _init(ray, address, num_cpus)
    finally:
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)


def _init(ray: Any, address: str, num_cpus: int | None) -> bool:
    if address:
        if num_cpus is not None:
            raise ConfigError(
                "num_cpus sizes a local Ray instance; a cluster's CPUs are set where it was started "
                "(`ray start --num-cpus N`)"
            )
        check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot connect to Ray at {address!r}: {exc}. Start a cluster with `ray start "
                "--head` (then --address auto), or leave --address empty for a local instance"
            ) from None
        return False
    cpus = num_cpus or num_cores()
    # address "local": a new instance, even where `ray.init()` would join one `ray start` left running
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    logger.info("started a local Ray instance with %d CPUs", cpus)
    return True


def check_cluster(ray: Any, tasks: list[Task], storage: Path) -> None:
    """Fail now, not hours in: a stage asks for more than any node has (Ray would queue it
    forever), or a node does not see the storage folder (or, for relative paths, the
    command's working folder)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
    gpus = ray.cluster_resources().get("GPU", 0.0)
    for task in tasks:
        if task.cpus > most_cpus:
            raise ConfigError(
                f"stage {task.label} asks for {task.cpus:g} CPUs; the largest Ray node has {most_cpus:g}"
            )
        if gpus_for(task) and gpus < 1:
            raise ConfigError(
                f"stage {task.label} asks for a GPU (device {task.config.device!r}) and the Ray "
                "cluster has none: set its device to cpu (or auto)"
            )
    token = uuid.uuid4().hex
    marker = storage / f".darla-ray-{token}"
    storage.mkdir(parents=True, exist_ok=True)
    marker.write_text(token)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(probe_node)
    try:
        refs = [
            probe.options(
                num_cpus=0,
                max_retries=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
            ).remote(str(marker), token, os.getcwd())
            for node in nodes
        ]
        try:
            views = ray.get(refs, timeout=NODE_CHECK_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise ConfigError(
                f"a Ray node did not answer within {NODE_CHECK_TIMEOUT:g}s (checking that it sees {storage})"
            ) from None
    finally:
        marker.unlink(missing_ok=True)
    relative = any(not t.folder.is_absolute() for t in tasks)
    for node, view in zip(nodes, views):
        where = f"{view['host']} ({node['NodeManagerAddress']})"
        if not view["storage"]:
            raise ConfigError(
                f"Ray node {where} does not see the storage folder {storage}: the ray backend needs "
                "a folder every node reads and writes at the same path (a shared filesystem); set "
                "--storage to one and put the run's --out under it"
            )
        if relative and not view["cwd"]:
            raise ConfigError(
                f"Ray node {where} has no folder {os.getcwd()}, where the run's relative paths start: "
                f"give --out as an absolute path under {storage}"
            )
