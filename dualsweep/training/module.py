"""The LightningModule: a thin shell around the training step (step.py), the held-out
evaluation, the curve and the checkpoints.

Manual optimisation, because Muon + AdamW are two optimisers stepping together. The step
index comes with each batch, so the objectives' allocation, the masking draws and the learning
rate are pure functions of (config, step): the same on every re-run and after a resume.
Losses are accumulated on the device and read back only at log steps (no host sync per step).
With data-parallel workers every worker runs this module on its share of each batch; the
logged sums are summed over the workers at log steps, and rank 0 alone evaluates the
held-out set and writes checkpoints.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import lightning as L
import torch

from dualsweep.config import RunConfig, run_key
from dualsweep.data.repetition import RepetitionPlan
from dualsweep.evaluate.heldout import held_out_losses
from dualsweep.model import Transformer
from dualsweep.objectives import objective_pair
from dualsweep.paths import atomic_write
from dualsweep.special_tokens import SpecialTokens
from dualsweep.training.distributed import SINGLE_WORKER, Workers, sum_over_workers
from dualsweep.training.optim import build_optimizers
from dualsweep.training.step import train_step


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class DualObjectiveModule(L.LightningModule):
    def __init__(
        self,
        config: RunConfig,
        special: SpecialTokens,
        plan: RepetitionPlan,
        held_out: torch.Tensor,
        checkpoint_path: Path | None = None,
        workers: Workers = SINGLE_WORKER,
        corpus_hash: str = "",
    ):
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.special = special
        self.plan = plan
        self.held_out = held_out
        self.model = Transformer(config.model)
        self.pair = objective_pair(config.objective.objectives)
        self.curve: list[dict] = []
        self.held_out_tokens = 0  # target tokens of the held-out evaluation
        self.train_time_s = 0.0
        self.held_out_eval_time_s = 0.0
        self.checkpoint_path = checkpoint_path
        self.workers = workers
        self.corpus_hash = corpus_hash
        """The corpus the run trains on: recorded in checkpoints, checked when resuming."""
        self.last_checkpoint_step: int | None = None
        self._last_checkpoint_time = time.monotonic()
        self._optimizer_states: list[dict] | None = None
        self._generator: torch.Generator | None = None
        self._reset_window()

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        return build_optimizers(self.model, self.config.optim)

    def _reset_window(self) -> None:
        """Start accumulating the metrics of the next log window."""
        self._window = {"loss": 0.0, "sums": [0.0, 0.0], "rows": [0, 0], "steps": 0}
        self._window_started = time.perf_counter()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        cfg = self.config
        step, tokens = int(batch["step"]), batch["tokens"]
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if self._generator is None or self._generator.device != tokens.device:
            self._generator = torch.Generator(device=tokens.device)
        stats = train_step(
            self.model,
            optimizers,
            tokens,
            step=step,
            total_steps=self.plan.steps,
            config=cfg,
            pair=self.pair,
            special=self.special,
            generator=self._generator,
            backward=self.manual_backward,
            workers=self.workers,
        )
        w = self._window
        w["loss"] = w["loss"] + stats.loss
        for i in (0, 1):
            w["sums"][i] = w["sums"][i] + stats.loss_sums[i]
            w["rows"][i] += stats.rows[i]
        w["steps"] += 1
        lr_multiplier = stats.lr_multiplier

        done = step + 1
        last = done == self.plan.steps
        if done % cfg.train.log_interval == 0 or last:
            self._log_window(done, lr_multiplier * cfg.optim.lr)
        if (cfg.held_out.eval_interval and done % cfg.held_out.eval_interval == 0) or last:
            self._evaluate(done)
        if self.checkpoint_path and self.workers.writes and not last and self._checkpoint_due(done):
            self.save_checkpoint(done, [o.optimizer for o in optimizers])

    def _checkpoint_due(self, done: int) -> bool:
        """Every `checkpoint_interval` steps, and at the first log step `checkpoint_minutes`
        after the last checkpoint (or the start). Only rank 0 decides: saving is no collective."""
        train = self.config.train
        if train.checkpoint_interval and done % train.checkpoint_interval == 0:
            return True
        minutes = (time.monotonic() - self._last_checkpoint_time) / 60
        return (
            bool(train.checkpoint_minutes)
            and done % train.log_interval == 0
            and (minutes >= train.checkpoint_minutes)
        )

    # -- logging ------------------------------------------------------------------------
    def _log_window(self, done: int, lr: float) -> None:
        w = self._window
        # The one host sync of the window; with several workers, the sums over all of them.
        loss_total, *sums_rows = self._window_totals()
        sums, rows = sums_rows[:2], sums_rows[2:]
        loss = loss_total / w["steps"]
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"training loss became {loss} by step {done}")
        elapsed = time.perf_counter() - self._window_started
        self.train_time_s += elapsed
        tokens_per_step = self.config.train.batch_size * self.config.model.seq_len
        row = {
            "step": done,
            "tokens_seen": done * tokens_per_step,
            "epoch": self.plan.epoch_at(done - 1),
            "lr": lr,
            "train_loss": loss,
            **{
                objective.columns.train: total / n if n else math.nan
                for objective, total, n in zip(self.pair, sums, rows, strict=True)
            },
            "tokens_per_s": w["steps"] * tokens_per_step / elapsed,
            "elapsed_s": self.train_time_s,
        }
        self._record(row)
        self.log("train_loss", loss, prog_bar=True, logger=False)
        self._reset_window()

    def _window_totals(self) -> list[float]:
        """The window's (loss, objective sums, objective rows), summed over the workers."""
        w = self._window
        device = self.model.embed.weight.device
        values = torch.stack(
            [
                torch.as_tensor(v, dtype=torch.float64, device=device)
                for v in (w["loss"], *w["sums"], *w["rows"])
            ]
        )
        return sum_over_workers(values, self.workers).tolist()

    def _evaluate(self, done: int) -> None:
        if not self.workers.writes:  # the workers hold the same weights: rank 0 evaluates
            return
        started = time.perf_counter()
        cfg = self.config
        with self.trainer.precision_plugin.forward_context():  # same numerics as training
            result = held_out_losses(
                self.model,
                self.held_out,
                self.special,
                self.pair,
                draws=cfg.held_out.md_eval_draws,
                seed=cfg.held_out.held_out_seed,
                batch_size=cfg.train.micro_batch_size or cfg.train.batch_size,
                min_mask_rate=cfg.objective.min_mask_rate,
                document_masking=cfg.data.document_masking,
            )
        self.held_out_tokens = result.tokens
        tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
        self._record(
            {
                "step": done,
                "tokens_seen": done * tokens_per_step,
                "epoch": self.plan.epoch_at(done - 1),
                **result.values,
                "elapsed_s": self.train_time_s,
            }
        )
        if done > 0:  # Lightning's progress bar only takes values logged inside a step
            first = self.pair[0].columns.held_out
            self.log(first, result.values[first], prog_bar=True, logger=False)
        # Evaluation time is not training time: restart the throughput window after it.
        spent = time.perf_counter() - started
        self._window_started += spent
        self.held_out_eval_time_s += spent

    def _record(self, row: dict) -> None:
        """Merge `row` into the curve row of the same step and send it to the loggers."""
        if self.curve and self.curve[-1]["step"] == row["step"]:
            self.curve[-1].update(row)
        else:
            self.curve.append(dict(row))
        self._send_to_loggers(row)

    def _send_to_loggers(self, row: dict) -> None:
        metrics = {k: v for k, v in row.items() if k != "step" and v == v}  # v == v: not NaN
        for logger in self.loggers:
            logger.log_metrics(metrics, step=row["step"])

    def on_train_start(self) -> None:
        if self._optimizer_states is not None:  # resuming: optimizers exist only now
            optimizers = self.optimizers()
            optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
            for optimizer, state in zip(optimizers, self._optimizer_states, strict=True):
                optimizer.optimizer.load_state_dict(state)
            self._optimizer_states = None
            for row in self.curve:  # loggers start new files: give them the rows so far
                self._send_to_loggers(row)
        if not self.curve:  # the untrained model: the start of every held-out curve
            self._evaluate(0)
        self._reset_window()

    # -- checkpoints --------------------------------------------------------------------
    # Our own format rather than Lightning's: resuming needs the model, the optimizer
    # states and our curve, and the data and schedule restart from `steps_done` by
    # construction, so Lightning's loop state is not needed (nor exact for this loop).
    def save_checkpoint(self, steps_done: int, optimizers: list[torch.optim.Optimizer]) -> None:
        state = {
            "run_key": run_key(self.config),
            "corpus_hash": self.corpus_hash,
            "steps_done": steps_done,
            "model": self.model.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "curve": self.curve,
            "held_out_tokens": self.held_out_tokens,
            "train_time_s": self.train_time_s,
            "held_out_eval_time_s": self.held_out_eval_time_s,
        }
        # A kill mid-write leaves the previous checkpoint whole; a full disk, no partial file.
        atomic_write(self.checkpoint_path, lambda tmp: torch.save(state, tmp))
        self.last_checkpoint_step = steps_done
        self._last_checkpoint_time = time.monotonic()

    def restore(self, state: dict) -> int:
        """Load a checkpoint's model, curve and (at train start) optimizer states; return its step."""
        if state["run_key"] != run_key(self.config):
            raise ValueError(
                f"checkpoint of run {state['run_key']} does not match run {run_key(self.config)}"
            )
        if state.get("corpus_hash", self.corpus_hash) != self.corpus_hash:
            from dualsweep.config import ConfigError

            raise ConfigError(
                f"{self.checkpoint_path}: trained on corpus {state['corpus_hash']}, the corpus is "
                f"now {self.corpus_hash}: resuming would continue on other data; restore the "
                "corpus, or start over with --force"
            )
        self.model.load_state_dict(state["model"])
        self._optimizer_states = state["optimizers"]
        self.curve = state["curve"]
        self.held_out_tokens = state["held_out_tokens"]
        self.train_time_s = state["train_time_s"]
        self.held_out_eval_time_s = state.get("held_out_eval_time_s", 0.0)
        return state["steps_done"]
