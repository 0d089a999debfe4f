"""What runs at one seed share across alpha (common random numbers), checked, not assumed:
two alphas at the same R and seed start from the same weights and see the same batches in
the same order; their masking draws are the same on the rows both train on masked diffusion
only with `objective.common_masks` (without it, a row's draw depends on how many rows of
the batch draw). The report's paired verdicts rest on this.
"""

from __future__ import annotations

import lightning as L
import torch

from dualsweep.objectives import registry

from .helpers import tiny_run_config


def _record_run(config, out, monkeypatch) -> dict:
    """Train `config`, recording its initial weights, each step's batch and each masking draw."""
    from dualsweep.training import train

    seen = {"batches": {}, "masks": {}}
    real_mask = registry.mask_tokens

    def recording_mask(tokens, rates, maskable, mask_id, generator):
        inputs, masked = real_mask(tokens, rates, maskable, mask_id, generator)
        if seen.pop("armed", False):  # the step's own draw (held-out evaluations draw too)
            seen["masks"][seen["step"]] = (rates.clone(), masked.clone())
        return inputs, masked

    class Record(L.Callback):
        def on_train_start(self, trainer, module):
            seen["initial"] = {k: v.clone() for k, v in module.model.state_dict().items()}

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            seen["step"], seen["armed"] = int(batch["step"]), True
            seen["batches"][seen["step"]] = batch["tokens"].clone()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen.pop("armed", None)  # an AR step draws no mask

    monkeypatch.setattr(registry, "mask_tokens", recording_mask)
    assert train(config, out, callbacks=[Record()], log=lambda m: None).status == "finished"
    return seen


def _md_rows(masks) -> torch.Tensor:
    rates, _ = masks
    return rates < 1  # the rows that drew a noise level (AR rows keep rate 1)


def test_two_alphas_at_one_seed_share_weights_and_batches_and_masks_only_if_common(
    tmp_path, monkeypatch
):
    steps = 8
    base = tiny_run_config(repetitions=2, token_budget=8 * 32 * steps)
    runs = {}
    for common in (False, True):
        for alpha in (0.5, 0.0):
            config = base.replace(alpha=alpha, common_masks=common)
            runs[common, alpha] = _record_run(config, tmp_path / f"{common}{alpha}", monkeypatch)
    for common in (False, True):
        half, md = runs[common, 0.5], runs[common, 0.0]
        for name, tensor in half["initial"].items():
            assert torch.equal(tensor, md["initial"][name]), name
        assert sorted(half["batches"]) == sorted(md["batches"]) == list(range(steps))
        for step in range(steps):
            assert torch.equal(half["batches"][step], md["batches"][step]), step
    # Every step of alpha 1/2 (the step allocation) trains 4 of its 8 rows on MD; pure MD all 8.
    for common in (False, True):
        half, md = runs[common, 0.5], runs[common, 0.0]
        same = []
        for step in range(steps):
            rows = _md_rows(half["masks"][step])
            assert int(rows.sum()) == 4 and bool(_md_rows(md["masks"][step]).all())
            (rates_a, masked_a), (rates_b, masked_b) = half["masks"][step], md["masks"][step]
            same.append(
                torch.equal(rates_a[rows], rates_b[rows])
                and torch.equal(masked_a[rows], masked_b[rows])
            )
        assert all(same) if common else not any(same), (common, same)
    # A run's key changes with common masks (its numbers do), a default run's does not.
    from dualsweep.config import run_key

    assert run_key(base.replace(common_masks=True)) != run_key(base)
    # Another seed is another draw of weights and batches.
    other = _record_run(base.replace(alpha=0.0, seed=1), tmp_path / "other", monkeypatch)
    assert not torch.equal(other["batches"][0], runs[False, 0.0]["batches"][0])
    initial = runs[False, 0.0]["initial"]
    assert not all(torch.equal(other["initial"][k], initial[k]) for k in initial)
