"""An lm-evaluation-harness model for trained dualsweep runs (optional extra `lmeval`).

    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM
    lm = DualSweepLM(run_dir="runs/a0.5-r16", mode="md")
    lm_eval.simple_evaluate(model=lm, tasks=["hellaswag"])   # with a network, real benchmarks

or `dualsweep lm-eval RUN_DIR --tasks hellaswag --mode md`. `register()` adds the model to
lm-eval's registry as "dualsweep" (for `model="dualsweep"`); importing the module does not
change lm-eval's state. `loglikelihood` scores continuations in the
chosen mode (ar, md pseudo-log-likelihood, or prefix-LM; see `evaluate.scoring`);
`loglikelihood_rolling` scores whole strings in rolling windows in that mode;
`generate_until` decodes greedily with causal attention.
"""

from __future__ import annotations

import torch
from lm_eval import utils
from lm_eval.api.model import LM

from dualsweep.evaluate.run import load_run
from dualsweep.evaluate.scoring import MODES, score_continuations
from dualsweep.model import CAUSAL


class DualSweepLM(LM):
    def __init__(
        self,
        run_dir: str,
        mode: str = "ar",
        md_mask_span: int = 1,
        batch_size: int = 32,
        device: str = "cpu",
        max_gen_toks: int = 64,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
        run = load_run(run_dir, device)
        if run.tokenizer is None:
            raise ValueError(f"{run_dir}: no tokenizer.json (token-shard runs cannot read text)")
        self.model, self.tokenizer, self.special = run.model, run.tokenizer, run.corpus.special
        self.mode, self.md_mask_span = mode, int(md_mask_span)
        self.batch_size, self.max_gen_toks = int(batch_size), int(max_gen_toks)
        self.seq_len = run.config.model.seq_len
        self._device = torch.device(device)

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
            span=self.md_mask_span,
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
    from lm_eval.api.registry import register_model

    register_model("dualsweep")(DualSweepLM)
