"""The training loop: sharded model, AdamW, warmup + schedule, grad accumulation, checkpoints.

The loss is the mean over the supervised tokens of the whole optimizer step: token losses are
summed over every micro-batch on every rank and divided by the global count of supervised
tokens (all-reduced before the backward passes). Gradient accumulation and the number of
processes therefore do not change what is optimised, unlike a mean of per-micro-batch means.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import get_scheduler

from core.exit_codes import ConfigError
from core.files import atomic_write_json
from train.checkpoint import LOOP_STATE, load_checkpoint, save_checkpoint, save_final_model
from train.config import TrainConfig
from train.data import IGNORE_INDEX, PadCollator, TokenizeStats
from train.distributed import DistEnv, all_reduce_sum
from train.sharding import ShardingReport, apply_ddp, apply_fsdp, inspect_sharding

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything the loop needs, built before the first step."""

    model: torch.nn.Module
    tokenizer: Any
    train_set: torch.utils.data.Dataset
    eval_set: torch.utils.data.Dataset | None
    collate: Callable
    stats: TokenizeStats


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in backward, non-reentrant. transformers 5 renamed the switch
    (`gradient_checkpointing_enable` warns, twice per LoRA run); 4.x has only the old name."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def build_parallel_model(model: torch.nn.Module, cfg: TrainConfig, env: DistEnv) -> tuple[torch.nn.Module, ShardingReport]:
    """Shard with FSDP2 under --fsdp, replicate with DDP for several processes, else plain."""
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    model.config.use_cache = False
    if cfg.fsdp:
        report = apply_fsdp(model, cfg, env)
    elif env.world_size > 1:
        model = apply_ddp(model, env)
        report = inspect_sharding(model, env, "ddp")
    else:
        model.to(env.device)
        report = inspect_sharding(model, env, "none")
    if cfg.fsdp and env.world_size == 1 and env.is_main:
        # Said, not warned: `make train` passes the recipe's --fsdp whatever NPROC is, and one
        # process training whole layers is a correct run (offload still applies).
        logger.info("--fsdp with a single process: the layers are wrapped but nothing is sharded "
                    "(torchrun --nproc_per_node=N, or make train NPROC=N, shards over N processes)")
    if cfg.fsdp and env.world_size > 1 and not report.sharded:
        raise RuntimeError("--fsdp was requested but the parameters are not sharded (see the log)")
    if cfg.torch_compile:
        inner = getattr(model, "module", model)
        for module in inner.modules():
            if type(module).__name__ in (report.wrapped_classes or tuple(inner._no_split_modules or ())):
                module.compile()
    return model, report


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch AdamW; no weight decay on biases and norm weights (1-d parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        fused=True if cfg.optim == "adamw_torch_fused" else None,
    )


def warmup_steps_for(cfg: TrainConfig, total_steps: int) -> int:
    """--warmup_steps as a count: a value below 1 is a fraction of all steps (rounded up)."""
    if cfg.warmup_steps < 1:
        return math.ceil(total_steps * cfg.warmup_steps)
    return int(cfg.warmup_steps)


def fit_warmup(warmup: int, total_steps: int, learning_rate: float) -> tuple[int, str | None]:
    """The warmup a run of `total_steps` can have, and what to say when it was cut.

    The warmup's first step runs at learning rate 0 and the rate reaches --learning_rate only
    when the warmup ends. A warmup as long as the run never gets there, and a one-step run
    (`--max_steps 1` with the recipe's 3%, rounded up to one step) trains at 0: the saved
    model is the base, unchanged. So the warmup is cut to end before the last step.
    """
    if total_steps > warmup:
        return warmup, None
    fitted = total_steps - 1
    return fitted, (f"a warmup of {warmup} step{'s' if warmup != 1 else ''} (--warmup_steps) would cover the whole "
                    f"{total_steps}-step run, which would then train below --learning_rate {learning_rate:g} "
                    f"throughout{' (at 0: the model would not change)' if total_steps == 1 else ''}; "
                    f"warmup cut to {fitted} step{'s' if fitted != 1 else ''}")


def token_loss_sum(model: torch.nn.Module, batch: dict[str, torch.Tensor], env: DistEnv, autocast: bool) -> torch.Tensor:
    """Forward one micro-batch; return the summed next-token loss over supervised positions."""
    labels = batch["labels"].to(env.device)
    inputs = {
        k: v.to(env.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k != "labels"
    }
    with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(**inputs, use_cache=False).logits
    # Predict token t+1 from position t; fp32 for the softmax whatever the compute dtype.
    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def count_supervised(batch: dict[str, torch.Tensor]) -> int:
    """Supervised targets in a micro-batch, after the causal shift."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


class Trainer:
    """Runs the optimisation for one config on one prepared model and dataset."""

    def __init__(self, cfg: TrainConfig, env: DistEnv, prep: Prepared):
        self.cfg, self.env, self.prep = cfg, env, prep
        self.output_dir = Path(cfg.output_dir)
        self.model, self.sharding = build_parallel_model(prep.model, cfg, env)
        # bf16 under FSDP2 comes from its MixedPrecisionPolicy; otherwise from autocast.
        self.autocast = cfg.bf16 and not cfg.fsdp
        self.sampler = DistributedSampler(
            prep.train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=cfg.seed
        )
        batch_size = 1 if cfg.packing else cfg.per_device_train_batch_size
        self.loader = DataLoader(
            prep.train_set,
            batch_size=batch_size,
            sampler=self.sampler,
            collate_fn=prep.collate,
            num_workers=cfg.dataloader_num_workers,
        )
        self.micro_per_epoch = len(self.loader)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.gradient_accumulation_steps)
        if cfg.max_steps > 0:
            self.total_steps = cfg.max_steps
        else:
            self.total_steps = max(1, math.ceil(cfg.num_train_epochs * self.steps_per_epoch))
        self.optimizer = build_optimizer(self.model, cfg)

        self.warmup, cut = fit_warmup(warmup_steps_for(cfg, self.total_steps), self.total_steps, cfg.learning_rate)
        if cut and env.is_main:
            logger.warning("%s", cut)
        self.scheduler = get_scheduler(
            cfg.lr_scheduler_type, self.optimizer, num_warmup_steps=self.warmup, num_training_steps=self.total_steps
        )
        self.step = 0
        self.log_history: list[dict] = []
        self.step_losses: list[float] = []
        self.supervised_tokens = 0
        self.train_seconds = 0.0

    # ---------------------------------------------------------------- reporting
    @property
    def effective_batch(self) -> int:
        """Examples (or packed rows) per optimizer step across all processes."""
        per_micro = 1 if self.cfg.packing else self.cfg.per_device_train_batch_size
        return per_micro * self.cfg.gradient_accumulation_steps * self.env.world_size

    def start_line(self) -> str:
        """The one log line that says what is about to run."""
        s = self.sharding
        if s.strategy == "fsdp2":
            shard = (
                f"fsdp2 ({' '.join(self.cfg.fsdp_options)}; {s.wrapped_modules} x {','.join(s.wrapped_classes)}; "
                f"sharded={s.sharded}, this rank holds {s.local_numel}/{s.full_numel} params)"
            )
        else:
            shard = s.strategy
        return (
            f"world_size={self.env.world_size} backend={self.env.backend or 'none'} device={self.env.device.type} "
            f"sharding={shard} precision={self.cfg.precision} packing={self.cfg.packing} "
            f"effective_batch={self.effective_batch} "
            f"(micro {1 if self.cfg.packing else self.cfg.per_device_train_batch_size} x accum "
            f"{self.cfg.gradient_accumulation_steps} x world {self.env.world_size}) "
            f"steps={self.total_steps} ({self.steps_per_epoch}/epoch, warmup {self.warmup}) "
            f"examples={self.prep.stats.used}"
            + (f" (of {self.prep.stats.total} read; {self.prep.stats.dropped_no_supervision} dropped)"
               if self.prep.stats.dropped_no_supervision else "")
        )

    def trainer_state(self) -> dict:
        """The HF-style trainer_state.json content."""
        return {
            "best_metric": None,
            "best_model_checkpoint": None,
            "epoch": self.step / self.steps_per_epoch,
            "eval_steps": self.cfg.eval_steps or self.cfg.logging_steps,
            "global_step": self.step,
            "is_hyper_param_search": False,
            "is_local_process_zero": True,
            "is_world_process_zero": True,
            "log_history": self.log_history,
            "logging_steps": self.cfg.logging_steps,
            "max_steps": self.total_steps,
            "num_train_epochs": math.ceil(self.total_steps / self.steps_per_epoch),
            "save_steps": self.cfg.save_steps,
            "train_batch_size": self.cfg.per_device_train_batch_size,
        }

    # ---------------------------------------------------------------- steps
    def _micro_batches(self, start_step: int) -> Iterator[tuple[int, list[dict[str, torch.Tensor]]]]:
        """Yield (epoch, micro-batches of one optimizer step) from `start_step` on, resumably."""
        step = start_step
        accum = self.cfg.gradient_accumulation_steps
        while step < self.total_steps:
            epoch = step // self.steps_per_epoch
            self.sampler.set_epoch(epoch)
            it = iter(self.loader)
            skip = (step % self.steps_per_epoch) * accum  # resume mid-epoch: same order, same place
            for _ in range(skip):
                next(it)
            group: list[dict[str, torch.Tensor]] = []
            for batch in it:
                group.append(batch)
                if len(group) == accum:
                    yield epoch, group
                    group = []
                    step += 1
                    if step >= self.total_steps:
                        return
            if group:  # the epoch's last, shorter accumulation
                yield epoch, group
                step += 1

    def train_step(self, micro: list[dict[str, torch.Tensor]]) -> tuple[float, int, float | None]:
        """One optimizer step over `micro`; return (global token-mean loss, global tokens, grad norm)."""
        world = self.env.world_size
        local_tokens = sum(count_supervised(b) for b in micro)
        n = int(all_reduce_sum(torch.tensor(local_tokens, dtype=torch.long), self.env).item())
        loss_sum = torch.zeros((), device=self.env.device)
        for i, batch in enumerate(micro):
            sync = i == len(micro) - 1
            ctx = self.model.no_sync() if (not sync and hasattr(self.model, "no_sync")) else contextlib.nullcontext()
            with ctx:
                part = token_loss_sum(self.model, batch, self.env, self.autocast)
                # Gradients are averaged over ranks, hence * world: the result is d(sum / n).
                (part * (world / max(n, 1))).backward()
            loss_sum += part.detach()
        grad_norm = None  # None, not NaN, when clipping is off: NaN is not valid JSON
        if self.cfg.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
            grad_norm = float(norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        total = all_reduce_sum(loss_sum, self.env)
        return float(total) / max(n, 1), n, grad_norm

    @torch.no_grad()
    def evaluate(self) -> float:
        """Token-mean loss over the eval set (all ranks take part)."""
        assert self.prep.eval_set is not None  # guarded by the caller
        sampler = DistributedSampler(self.prep.eval_set, num_replicas=self.env.world_size, rank=self.env.rank, shuffle=False)
        loader = DataLoader(self.prep.eval_set, batch_size=self.cfg.per_device_eval_batch_size,
                            sampler=sampler, collate_fn=PadCollator(self.prep.tokenizer.pad_token_id))
        self.model.eval()
        loss = torch.zeros((), device=self.env.device)
        tokens = 0
        for batch in loader:
            loss += token_loss_sum(self.model, batch, self.env, self.autocast)
            tokens += count_supervised(batch)
        self.model.train()
        total = all_reduce_sum(loss, self.env)
        n = all_reduce_sum(torch.tensor(tokens, dtype=torch.long), self.env)
        return float(total) / max(int(n), 1)

    # ---------------------------------------------------------------- run
    def run(self, resume: Path | None = None) -> dict:
        """Train to the end (from checkpoint `resume` if given), save the model, return the summary."""
        env = self.env
        if resume is not None:
            self._check_same_run(resume)
            loop_state, state = load_checkpoint(resume, self.model, self.optimizer, self.scheduler, env)
            self.step = int(loop_state["step"])
            self.step_losses = list(loop_state["step_losses"])
            self.supervised_tokens = int(loop_state["supervised_tokens"])
            self.train_seconds = float(loop_state["train_seconds"])
            self.log_history = state["log_history"]
            if loop_state.get("world_size") != env.world_size:
                logger.warning(
                    "checkpoint written by %s processes, resuming on %d: the model and optimizer "
                    "reshard, but the data order differs from the interrupted run",
                    loop_state.get("world_size"), env.world_size,
                )
        logger.info(self.start_line())
        self.model.train()

        # logging_redirect_tqdm: log lines go above the bar instead of being glued to it.
        with logging_redirect_tqdm(), tqdm(total=self.total_steps, initial=self.step,
                                           disable=not env.is_main, desc="train") as bar:
            self._train_to_end(bar)
        return self._finish()

    def _train_to_end(self, bar: Any) -> None:
        """The optimizer steps from self.step on, with logging, evaluation and checkpoints."""
        cfg, env = self.cfg, self.env
        t0 = time.perf_counter()
        window: list[float] = []  # step losses since the last log entry
        window_tokens = 0
        for _epoch, micro in self._micro_batches(self.step):
            lr = self.scheduler.get_last_lr()[0]  # the rate this step runs at (logged as HF does)
            loss, tokens, grad_norm = self.train_step(micro)
            self.step += 1
            bar.update(1)
            self.step_losses.append(loss)
            self.supervised_tokens += tokens
            window.append(loss)
            window_tokens += tokens
            end_of_epoch = self.step % self.steps_per_epoch == 0
            if self.step % cfg.logging_steps == 0 or self.step == self.total_steps:
                entry = {
                    "epoch": round(self.step / self.steps_per_epoch, 4),
                    "grad_norm": grad_norm,
                    "learning_rate": lr,
                    "loss": round(sum(window) / len(window), 6),
                    "step": self.step,
                    "supervised_tokens": window_tokens,
                }
                window, window_tokens = [], 0
                self.log_history.append(entry)
                if env.is_main:
                    logger.info("step %d/%d loss %.4f lr %.3g grad_norm %s", self.step, self.total_steps,
                                entry["loss"], entry["learning_rate"],
                                "off" if grad_norm is None else f"{grad_norm:.3g}")
            if self.prep.eval_set is not None and (
                (cfg.eval_strategy == "steps" and self.step % (cfg.eval_steps or cfg.logging_steps) == 0)
                or (cfg.eval_strategy == "epoch" and end_of_epoch)
            ):
                eval_loss = self.evaluate()
                self.log_history.append({"epoch": round(self.step / self.steps_per_epoch, 4),
                                         "eval_loss": eval_loss, "step": self.step})
                if env.is_main:
                    logger.info("step %d eval_loss %.4f", self.step, eval_loss)
            if (cfg.save_strategy == "steps" and self.step % cfg.save_steps == 0) or (
                cfg.save_strategy == "epoch" and end_of_epoch
            ):
                self.train_seconds += time.perf_counter() - t0
                self._save(self.step)
                t0 = time.perf_counter()
        self.train_seconds += time.perf_counter() - t0

    def _loop_state(self) -> dict:
        return {
            "step": self.step,
            "step_losses": self.step_losses,
            "supervised_tokens": self.supervised_tokens,
            "train_seconds": self.train_seconds,
            "world_size": self.env.world_size,
            "trained_on": self._trained_on(),
        }

    def _trained_on(self) -> dict:
        """What a checkpoint continues: its base model and the bytes of its data (hashed once)."""
        if getattr(self, "_identity", None) is None:
            model = Path(self.cfg.model_name_or_path).expanduser()
            self._identity = {
                "model_name_or_path": str(model.resolve()) if model.is_dir() else self.cfg.model_name_or_path,
                "data_sha256": hashlib.sha256(Path(self.cfg.data_path).expanduser().read_bytes()).hexdigest()}
        return self._identity

    def _check_same_run(self, resume: Path) -> None:
        """A resume continues the run it names: with other data or another base, the result (and its
        card) would claim a training that did not happen. Checkpoints of older versions say nothing."""
        old = json.loads((resume / LOOP_STATE).read_text()).get("trained_on")
        if not old:
            return
        new = self._trained_on()
        if old.get("data_sha256") != new["data_sha256"]:
            raise ConfigError(f"--resume_from_checkpoint: {resume} was trained on other data than --data_path "
                              f"{self.cfg.data_path} holds; resume with the same data, or start afresh "
                              "(--overwrite True)")
        if old.get("model_name_or_path") != new["model_name_or_path"]:
            raise ConfigError(f"--resume_from_checkpoint: {resume} was trained from {old.get('model_name_or_path')}, "
                              f"not --model_name_or_path {self.cfg.model_name_or_path}; resume with that base, or "
                              "start afresh (--overwrite True)")

    def _save(self, step: int) -> None:
        save_checkpoint(self.output_dir, step, self.model, self.optimizer, self.scheduler,
                        self._loop_state(), self.trainer_state(), self.env, self.cfg.save_total_limit)

    def _finish(self) -> dict:
        cfg, env = self.cfg, self.env
        train_loss = sum(self.step_losses) / max(len(self.step_losses), 1)
        self.log_history.append({
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "step": self.step,
            "train_loss": train_loss,
            "train_runtime": round(self.train_seconds, 3),
        })
        save_final_model(self.model, self.prep.tokenizer, self.output_dir, env, self.sharding.strategy == "fsdp2",
                         save_dtype=cfg.save_dtype)
        stats = self.prep.stats
        summary = {
            "world_size": env.world_size,
            "fsdp": self.sharding.sharded,
            "sharding": self.sharding.as_dict(),
            "fsdp_options": list(cfg.fsdp_options),
            "deepspeed": False,
            "packing": cfg.packing,
            "precision": cfg.precision,
            "device": env.device.type,
            "backend": env.backend,
            "train_loss": train_loss,
            "final_loss": self.step_losses[-1] if self.step_losses else None,
            "steps": self.step,
            "effective_batch_size": self.effective_batch,
            "supervised_tokens": self.supervised_tokens,
            "supervised_tokens_per_s": self.supervised_tokens / self.train_seconds if self.train_seconds > 0 else None,
            "examples": stats.used,
            "examples_read": stats.total,
            "truncated_examples": stats.truncated,
            "dropped_examples": stats.dropped_no_supervision,
            "elapsed_s": round(self.train_seconds, 3),
            "torch_version": torch.__version__,
        }
        if env.is_main:
            atomic_write_json(self.output_dir / "trainer_state.json", self.trainer_state())
            logger.info("train_loss %.4f over %d steps; %d supervised tokens (%.0f/s); fsdp=%s",
                        train_loss, self.step, self.supervised_tokens,
                        summary["supervised_tokens_per_s"] or 0.0, summary["fsdp"])
        return summary
