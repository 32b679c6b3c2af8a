"""Joining (or starting) the Ray cluster a run works on, and leaving it as it was found.

`ray.init()` with no address joins a cluster already running on the machine, and one started
by `ray start` there would then refuse this run's settings; so the address is always explicit:
`--ray_address`, else RAY_ADDRESS, else "local" (a cluster of this machine's cores for this run
only, stopped at its end). Workers import the project's `core` package: on a local cluster they
run this interpreter, which has it installed; on a cluster joined by address the driver's copy
of `core` is shipped with the job (`runtime_env` py_modules), so every node runs the code the
driver runs (the nodes still need the dependencies: `pip install '.[ray]'` on each).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.exit_codes import UserError
from core.redact import url_without_credentials

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install '.[ray]'"


class ClusterError(UserError):
    """Ray is missing, the cluster cannot be reached, or it lacks what the run asks for."""


def import_ray() -> Any:
    """The `ray` module with Ray Data, or a one-line ClusterError saying how to install it."""
    try:
        import ray  # deferred: an optional extra, heavy to import (~1 s)
        import ray.data  # noqa: F401  (Ray Data comes with the [data] extra)
    except ImportError as err:
        raise ClusterError(f"--backend ray needs Ray Data, which is not installed ({err}): {INSTALL_HINT}") from None
    return ray


def target_address(address: str, environ: dict[str, str] | None = None) -> str:
    """The address `ray.init` is given: the flag, else RAY_ADDRESS, else a local cluster."""
    env = os.environ if environ is None else environ
    return address or env.get("RAY_ADDRESS", "").strip() or "local"


def check_reachable(address: str, shown: str, timeout_s: float = 10.0) -> None:
    """Fail in seconds, with one line, on an address nothing listens at: ray.init would retry
    for minutes, printing a warning every few seconds."""
    if address == "auto":
        return  # Ray finds the address itself (a cluster started on this machine)
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ClusterError(f"--ray_address {shown}: expected host:port (e.g. head:6379) or ray://host:10001")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise ClusterError(
            f"cannot reach the Ray cluster at {shown} ({err.strerror or err}): start it with `ray start --head` "
            "(see docs/scale.md), or leave --ray_address and RAY_ADDRESS empty for a local one"
        ) from None


@dataclass
class ClusterSession:
    """A connection to the cluster; `close` shuts down only what `open` started."""

    ray: Any
    address: str
    owned: bool  # this process called ray.init (and so calls ray.shutdown)

    @classmethod
    def open(cls, address: str = "") -> ClusterSession:
        ray = import_ray()
        if ray.is_initialized():  # an embedding program (or a test) already connected: use it
            return cls(ray, "existing", owned=False)
        target = target_address(address)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report sent from a run
        # Ray Data's actors make Ray's C++ core print an "E" line per round (its issue 53727: actor
        # arguments in the object store) that is noise to a user; RAY_BACKEND_LOG_LEVEL=warning
        # brings Ray's own C++ messages back.
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        kwargs: dict[str, Any] = {"address": target, "logging_level": logging.WARNING, "log_to_driver": False}
        if target == "local":
            kwargs["include_dashboard"] = False
        else:
            # The driver's own `core`, shipped to every worker of this job.
            kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parent.parent)]}
        shown = url_without_credentials(target)
        if target != "local":
            check_reachable(target, shown)
        log.info("ray: %s", "starting a local cluster" if target == "local" else f"joining {shown}")
        try:
            ray.init(**kwargs)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ClusterError(
                f"cannot join the Ray cluster at {shown} ({first[:200]}): start it with `ray start --head` "
                "(see docs/scale.md), or leave --ray_address and RAY_ADDRESS empty for a local one"
            ) from None
        session = cls(ray, shown, owned=True)
        log.info("ray: %s", session.describe())
        return session

    def resources(self) -> dict[str, float]:
        return dict(self.ray.cluster_resources())

    def nodes_alive(self) -> int:
        return sum(1 for node in self.ray.nodes() if node.get("Alive"))

    def describe(self) -> str:
        res = self.resources()
        return (f"{self.nodes_alive()} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs "
                f"({self.address})")

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
