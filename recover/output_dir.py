"""Write a checkpoint directory atomically, and carry over config and tokenizer files.

The model is written into a hidden temporary directory beside the target and renamed into
place only when complete, so an interrupted or refused run leaves no half model behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
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


@contextmanager
def atomic_output_dir(final: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; rename it to `final` if the block succeeds.

    On any exception the temporary directory is removed and `final` is untouched.
    """
    final = final.expanduser().absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
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
