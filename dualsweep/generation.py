"""Text from a trained model, both ways it was trained: autoregressive and masked diffusion.

- `--mode ar`: next-token sampling with causal attention (temperature, top-k, top-p; 0
  temperature is greedy decoding), stopping at the end-of-document token, a stop string or
  the token budget.
- `--mode md`: masked-diffusion sampling. The prompt is followed by `max_new_tokens` mask
  tokens; each of `steps` steps runs the model with bidirectional attention, draws a token
  for every masked position from the logits one position before it (masked next-token
  prediction, as trained), and keeps the `ceil(masked / steps left)` of them that the model
  is most confident of (`order="confidence"`, as MaskGIT and LLaDA's low-confidence
  remasking) or a random such set (`order="random"`, as MDLM's ancestral sampling unmasks
  uniformly). Every mask is filled by the last step.

Prompts start after the end-of-document token, as every training document does. Each prompt
draws from its own generator seeded by (seed, its index), so a prompt's text does not depend
on the others in the batch, and the same seed gives the same text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dualsweep.model import BIDIRECTIONAL, CAUSAL
from dualsweep.special_tokens import SpecialTokens

MODES = ("ar", "md")
ORDERS = ("confidence", "random")


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    """0: the most probable token (greedy)."""
    top_k: int = 0
    """Draw among the k most probable tokens only (0: all)."""
    top_p: float = 1.0
    """Draw among the most probable tokens whose probabilities sum to p (1: all)."""
    seed: int = 0
    stop: tuple[str, ...] = ()
    """AR: stop once the text holds one of these (it is cut there)."""
    steps: int = 16
    """MD: denoising steps."""
    order: str = "confidence"
    """MD: which drawn tokens each step keeps: the most confident, or a random set."""

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens", "must be at least 1"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (self.top_k >= 0, "top_k", "must be >= 0"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (self.steps >= 1, "steps", "must be at least 1"),
            (self.order in ORDERS, "order", f"must be one of {', '.join(ORDERS)}"),
        ]
        for ok, name, why in checks:
            if not ok:
                from dualsweep.config import ConfigError

                raise ConfigError(
                    f"--{name.replace('_', '-')}: {why} (got {getattr(self, name)!r})"
                )


def _never(special: SpecialTokens) -> tuple[int, ...]:
    """Ids never generated: padding, beginning of sequence, the mask."""
    return (special.pad, special.bos, special.mask)


def draw(
    logits: torch.Tensor, sampling: Sampling, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A token per row of `logits` (N, V), and its probability under the distribution drawn
    from (after temperature, top-k and top-p)."""
    logits = logits.float()
    if sampling.temperature == 0:
        probs = torch.softmax(logits, dim=-1)
        token = logits.argmax(dim=-1)
        return token, probs.gather(-1, token[:, None])[:, 0]
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = logits.topk(min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if sampling.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more probable ones
        sorted_probs = sorted_probs.masked_fill(before >= sampling.top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    token = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return token, probs.gather(-1, token[:, None])[:, 0]


@torch.no_grad()
def generate_ar(
    model, prompt: Sequence[int], special: SpecialTokens, sampling: Sampling, generator, decode=None
) -> list[int]:
    """New token ids after `prompt` (which starts with eos), causally, until eos, a stop
    string (`decode` turns ids into text to look for it) or `max_new_tokens`."""
    device = next(model.parameters()).device
    seq_len = model.config.seq_len
    tokens, new = list(prompt), []
    for _ in range(sampling.max_new_tokens):
        window = torch.tensor([tokens[-seq_len:]], device=device)
        logits = model(window, CAUSAL)[0, -1:].float()
        logits[:, list(_never(special))] = -math.inf
        token = int(draw(logits, sampling, generator)[0])
        if token == special.eos:
            break
        tokens.append(token)
        new.append(token)
        if sampling.stop and decode and any(s in decode(new) for s in sampling.stop):
            break
    return new


@torch.no_grad()
def generate_md(
    model, prompt: Sequence[int], special: SpecialTokens, sampling: Sampling, generator
) -> list[int]:
    """`max_new_tokens` ids after `prompt`, unmasked over `steps` steps (see the module)."""
    device = next(model.parameters()).device
    length = sampling.max_new_tokens
    if len(prompt) + length > model.config.seq_len:
        from dualsweep.config import ConfigError

        raise ConfigError(
            f"--max-new-tokens: the prompt ({len(prompt)} tokens) and {length} masks exceed the "
            f"model's seq_len {model.config.seq_len}"
        )
    tokens = torch.tensor([*prompt, *[special.mask] * length], device=device)
    start = len(prompt)
    for step in range(sampling.steps):
        masked = (tokens[start:] == special.mask).nonzero()[:, 0] + start  # positions
        if len(masked) == 0:
            break
        logits = model(tokens[None], BIDIRECTIONAL)[0, masked - 1].float()  # i predicts i + 1
        logits[:, list(_never(special))] = -math.inf
        drawn, confidence = draw(logits, sampling, generator)
        keep = math.ceil(len(masked) / (sampling.steps - step))
        if sampling.order == "confidence":
            chosen = confidence.topk(keep).indices
        else:
            chosen = torch.randperm(len(masked), generator=generator, device=device)[:keep]
        tokens[masked[chosen]] = drawn[chosen]
    return tokens[start:].tolist()


def generate(
    run, prompts: Sequence[str], *, mode: str = "ar", sampling: Sampling = Sampling()
) -> list[str]:
    """The text each prompt continues with, from a loaded run (`evaluate.run.load_run`)."""
    from dualsweep.config import ConfigError

    if mode not in MODES:
        raise ConfigError(f"--mode: must be one of {', '.join(MODES)} (got {mode!r})")
    if run.tokenizer is None:
        raise ConfigError(f"{run.run_dir}: no tokenizer.json (token-shard runs cannot read text)")
    device = next(run.model.parameters()).device
    texts = []
    for index, prompt in enumerate(prompts):
        generator = torch.Generator(device=device).manual_seed(sampling.seed * 1_000_003 + index)
        ids = [run.special.eos, *run.tokenizer.encode(prompt).ids]
        if mode == "ar":
            new = generate_ar(
                run.model, ids, run.special, sampling, generator, decode=run.tokenizer.decode
            )
        else:
            new = generate_md(run.model, ids, run.special, sampling, generator)
            if run.special.eos in new:  # the document ends there
                new = new[: new.index(run.special.eos)]
        text = run.tokenizer.decode(new)
        for stop in sampling.stop:
            text = text.split(stop)[0]
        texts.append(text)
    return texts
