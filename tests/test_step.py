"""The training step against an independent derivation of what one step must do.

At alpha = 1 a step is AdamW on the gradient of the mean next-token cross-entropy. AdamW's
first update has a closed form: with m = (1 - b1) g and v = (1 - b2) g^2, bias correction
gives m_hat = g and v_hat = g^2, so a parameter moves to
    p * (1 - lr * wd) - lr * g / (|g| + eps),
where wd is the weight decay of its group (the blocks' 2-D matrices only) and lr the peak
rate times the warmup multiplier of step 0, (0 + 1) / round(warmup_fraction * steps).
"""

from __future__ import annotations

import copy

import torch

from dualsweep.model import Transformer
from dualsweep.objectives import AR, MD
from dualsweep.special_tokens import SpecialTokens
from dualsweep.training.optim import build_optimizers
from dualsweep.training.step import train_step

from .helpers import tiny_run_config

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, mask=3)


def test_one_ar_step_is_adamw_on_the_hand_computed_gradient():
    config = tiny_run_config(alpha=1.0, lr=1e-2, weight_decay=0.1, grad_clip=0.0)
    V, T, B = config.model.vocab_size, config.model.seq_len, config.train.batch_size
    torch.manual_seed(0)
    model = Transformer(config.model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # Ids 4.. are ordinary tokens: every position but the first is a target.
    tokens = torch.randint(4, V, (B, T), generator=torch.Generator().manual_seed(1))

    # The gradient, from the loss's definition on a copy of the model.
    reference = copy.deepcopy(model)
    log_probs = torch.log_softmax(reference(tokens).float(), dim=-1)
    nll = -log_probs[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)  # (B, T - 1)
    loss = nll.mean()  # each row's mean over its T - 1 targets, each row weighing 1/B
    grads = dict(
        zip(
            [name for name, _ in reference.named_parameters()],
            torch.autograd.grad(loss, list(reference.parameters())),
            strict=True,
        )
    )

    stats = train_step(
        model,
        build_optimizers(model, config.optim),
        tokens,
        step=0,
        total_steps=config.steps,
        config=config,
        pair=(AR, MD),
        special=SPECIAL,
        generator=torch.Generator(),
    )
    warmup_steps = round(config.optim.warmup_fraction * config.steps)
    assert (config.steps, warmup_steps) == (48, 2)
    assert stats.lr_multiplier == 1 / warmup_steps
    assert stats.rows == (B, 0)
    torch.testing.assert_close(stats.loss, loss.detach(), rtol=1e-6, atol=0)

    lr = config.optim.lr / warmup_steps
    for name, p in model.named_parameters():
        decay = config.optim.weight_decay if name.startswith("blocks.") and p.ndim == 2 else 0.0
        g = grads[name]
        expected = before[name] * (1 - lr * decay) - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7, msg=name)
        assert not torch.equal(p.detach(), before[name]), name  # every parameter moved
