"""An lm-evaluation-harness model for trained dualsweep runs (optional extra `lmeval`).

    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM
    lm = DualSweepLM(run_dir="runs/a0.5-r16", mode="md")
    lm_eval.simple_evaluate(model=lm, tasks=["hellaswag"])   # with a network, real benchmarks

or `dualsweep lm-eval RUN_DIR --tasks hellaswag --mode md`, or the harness's own command line
with this model registered: `dualsweep-lm-eval --model dualsweep --model_args
run_dir=RUN_DIR,mode=md --tasks hellaswag` (lm-eval 0.4 has no plugin mechanism through which
its own `lm_eval` command could find a model of another package). `register()` adds the
model to lm-eval's registry as "dualsweep"; importing the module does not change lm-eval's
state. `loglikelihood` scores continuations in the chosen mode (ar, md pseudo-log-likelihood,
or prefix-LM; see `evaluate.scoring`); `loglikelihood_rolling` scores whole strings in
rolling windows in that mode; `generate_until` decodes greedily with causal attention.
"""

from __future__ import annotations

import torch
from lm_eval import utils
from lm_eval.api.model import LM

from dualsweep.evaluate.loaded import LoadedRun, load_run
from dualsweep.evaluate.scoring import score_continuations, scoring_modes
from dualsweep.model import CAUSAL

DEFAULT_BATCH_SIZE = 32


def _device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _batch_size(batch_size) -> int:
    """The harness passes `--batch_size` through as given: a number, or "auto" (here: the
    default, since scoring batches are also bounded by `max_batch_tokens`)."""
    if batch_size is None or str(batch_size).startswith("auto"):
        return DEFAULT_BATCH_SIZE
    return int(batch_size)


class DualSweepLM(LM):
    def __init__(
        self,
        run_dir: str | None = None,
        mode: str = "ar",
        md_mask_span: int = 1,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        device: str = "auto",
        max_gen_toks: int = 64,
        max_batch_tokens: int = 0,
        *,
        run: LoadedRun | None = None,
        **harness_options,  # what the harness passes every model (max_batch_size, ...)
    ):
        super().__init__()
        if run is None:
            if run_dir is None:
                raise ValueError("DualSweepLM needs run_dir (a finished run folder)")
            run = load_run(run_dir, _device(device))
        if run.tokenizer is None:
            raise ValueError(f"{run_dir}: no tokenizer.json (token-shard runs cannot read text)")
        self.model, self.tokenizer, self.special = run.model, run.tokenizer, run.special
        self.set_mode(mode, md_mask_span=md_mask_span)
        self.batch_size, self.max_gen_toks = _batch_size(batch_size), int(max_gen_toks)
        self.max_batch_tokens = int(max_batch_tokens)
        self.seq_len = run.config.model.seq_len
        self._device = next(self.model.parameters()).device

    @classmethod
    def from_run(cls, run: LoadedRun, mode: str = "ar", **options) -> DualSweepLM:
        """The adapter around an already loaded run (one model for every task and mode)."""
        return cls(run=run, mode=mode, **options)

    def set_mode(self, mode: str, *, md_mask_span: int | None = None) -> None:
        """Score in `mode` from now on (ar, md or prefix)."""
        if mode not in scoring_modes():
            raise ValueError(f"mode: must be one of {', '.join(scoring_modes())} (got {mode!r})")
        self.mode = mode
        if md_mask_span is not None:
            self.md_mask_span = int(md_mask_span)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids if text else []

    def _score(self, pairs):
        return score_continuations(
            self.model,
            pairs,
            self.mode,
            mask_id=self.special.mask,
            pad_id=self.special.pad,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
            span=self.md_mask_span if self.mode == "md" else 1,
        )

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        # Contexts start with eos, the token every training document follows.
        pairs = [
            ([self.special.eos, *self._encode(c)], self._encode(x))
            for c, x in (r.args for r in requests)
        ]
        return [(s.log_prob, s.is_greedy) for s in self._score(pairs)]

    def loglikelihood_rolling(self, requests) -> list[float]:
        totals = []
        for (text,) in (r.args for r in requests):
            windows = [
                utils.make_disjoint_window(w)
                for w in utils.get_rolling_token_windows(
                    self._encode(text), self.special.eos, self.seq_len, context_len=1
                )
            ]
            totals.append(sum(s.log_prob for s in self._score(windows)))
        return totals

    @torch.no_grad()
    def generate_until(self, requests) -> list[str]:
        outputs = []
        for context, gen_kwargs in (r.args for r in requests):
            until = gen_kwargs.get("until", [])
            until = [until] if isinstance(until, str) else list(until)
            budget = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            tokens, generated, text = [self.special.eos, *self._encode(context)], [], ""
            for _ in range(budget):
                window = torch.tensor([tokens[-self.seq_len :]], device=self._device)
                next_token = int(self.model(window, CAUSAL)[0, -1].argmax())
                if next_token == self.special.eos:
                    break
                tokens.append(next_token)
                generated.append(next_token)
                text = self.tokenizer.decode(generated)
                if any(stop in text for stop in until):
                    break
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs


def register() -> None:
    """Make `lm_eval.simple_evaluate(model="dualsweep", model_args="run_dir=...")` find us."""
    import lm_eval.models  # noqa: F401 - the harness's own models first: it loads them only
    from lm_eval.api.registry import register_model  # into an empty registry

    register_model("dualsweep")(DualSweepLM)


def harness_cli() -> None:
    """`dualsweep-lm-eval`: the harness's command line (every flag of `lm_eval`), with this
    package's model registered as `dualsweep`."""
    register()
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
