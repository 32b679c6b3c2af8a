"""Write a checkpoint directory atomically, and carry over config and tokenizer files.

The model is written into a hidden temporary directory beside the target and renamed into
place only when complete, so an interrupted or refused run leaves no half model behind. The
temporary name carries the host and process id (`.<name>.partial-<host>-<pid>-<random>`): a
process killed outright (SIGKILL, power loss) cannot remove its own, so the next run for the
same target removes those whose process no longer exists, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

# Tokenizer and generation files travel with the weights; weights, shard indexes, the
# manifest and training artefacts (trainer_state.json, ...) do not.
_SIDECAR_NAMES = {"special_tokens_map.json", "added_tokens.json", "generation_config.json",
                  "vocab.json", "merges.txt", "chat_template.json"}


def _is_sidecar(path: Path) -> bool:
    name = path.name
    return path.is_file() and (name.startswith("tokenizer") or name in _SIDECAR_NAMES or name.endswith(".jinja"))


def copy_sidecars(source: Path, target: Path) -> list[str]:
    """Copy the tokenizer and generation-config files of `source` into `target`; return their names."""
    copied = []
    for path in sorted(source.iterdir()):
        if _is_sidecar(path):
            shutil.copy2(path, target / path.name)
            copied.append(path.name)
    return copied


def write_config(config: dict, target: Path, dtype: str) -> None:
    """Write config.json with its dtype entry set to the dtype the weights are stored in."""
    config = dict(config)
    if "torch_dtype" in config:  # configs written before transformers 5
        config["torch_dtype"] = dtype
    config["dtype"] = dtype
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _host() -> str:
    """This machine's name as it goes into a temporary directory's name (no path separators)."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def partial_path(final: Path) -> Path:
    """A temporary name beside `final` for a file written in one piece and renamed when complete,
    which `remove_stale_partials(final)` recognises after a kill."""
    return final.parent / f".{final.name}.partial-{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove `.<name>.partial-*` directories (or files) beside `final` left by dead processes of this host.

    Only those named by this module (`.<name>.partial-<host>-<pid>-<random>`) are
    judged; one whose process is still running, or which another host wrote (on a shared
    filesystem its process cannot be checked from here), is left alone. Returns what was removed.
    """
    final = final.expanduser().absolute()
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(final.name)}\.partial-(?P<host>.+)-(?P<pid>\d+)-[^-]+")
    removed = []
    for path in sorted(final.parent.iterdir()):
        if not path.name.startswith(f".{final.name}.partial-") or not (path.is_dir() or path.is_file()):
            continue
        match = pattern.fullmatch(path.name)
        if not match or match["host"] != _host():
            logger.warning("%s: the partial output of another run (%s); delete it if no run is writing it",
                           path, "on host " + match["host"] if match else "of an older version")
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _process_exists(pid):
            continue
        if path.is_file():
            size = path.stat().st_size
            path.unlink(missing_ok=True)
        else:
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
            shutil.rmtree(path, ignore_errors=True)
        logger.warning("removed %s (%.1f MB): the partial output of an interrupted run (process %d, "
                       "no longer running)", path, size / 1e6, pid)
        removed.append(path)
    return removed


@contextmanager
def atomic_output_dir(final: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; rename it to `final` if the block succeeds.

    On any exception (KeyboardInterrupt and the CLI's SIGTERM included) the temporary
    directory is removed and `final` is untouched. Stale ones of earlier, killed runs for the
    same target are removed first (`remove_stale_partials`).
    """
    final = final.expanduser().absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-{_host()}-{os.getpid()}-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; give it a normal directory's mode
    try:
        yield tmp
        if final.exists() and any(final.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{final} appeared while writing; the result is not moved over it")
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old-"))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if final.exists():
                final.rmdir()
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %s", final)
