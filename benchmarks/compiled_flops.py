"""Which share of a training step's matmul FLOPs runs inside compiled graphs (`train.compile`).

A compiled step is only as fast as what it leaves outside its graphs: a graph break, a layer
left eager, a loss that bypasses the compiled head. This counts it. The step (the real
`train_step`, forward and backward of every micro-batch, at alpha 1/2) runs once eagerly under
`FlopCounterMode`, the total; then with its blocks and head compiled through a backend that
counts the FLOPs of every graph it is handed (forward and backward graphs, from AOTAutograd,
on the compile-time fake inputs) and adds them at each call. The share is the second over the
first. Graphs run as plain PyTorch (no Inductor): the count does not depend on the kernels.

The optimizer is left out (its step is a no-op here): Muon's Newton-Schulz matmuls are the
optimizer's, run outside the model's graphs, and scale with parameters, not tokens.
"""

from __future__ import annotations

import contextlib
import functools
from unittest import mock

import torch
from torch.utils.flop_counter import FlopCounterMode


class GraphFlops:
    """A torch.compile backend that counts the FLOPs its graphs run."""

    def __init__(self):
        self.flops = 0
        self.graphs = 0

    def _compiler(self, gm, example_inputs):
        from functorch.compile import make_boxed_func
        from torch._guards import detect_fake_mode

        fake = detect_fake_mode(example_inputs)
        with (
            fake if fake is not None else contextlib.nullcontext(),
            FlopCounterMode(display=False) as counter,
        ):
            gm(*example_inputs)
        per_call = counter.get_total_flops()
        self.graphs += 1

        def run(*args):
            self.flops += per_call
            return gm(*args)

        return make_boxed_func(run)

    @functools.cached_property
    def backend(self):
        from torch._dynamo.backends.common import aot_autograd

        return aot_autograd(fw_compiler=self._compiler, bw_compiler=self._compiler)


def compiled_share(config, tokens: torch.Tensor, special) -> dict:
    """Matmul FLOPs of one step: eager total, inside compiled graphs, and the share."""
    from dualsweep.model import Transformer
    from dualsweep.objectives import losses

    from .traffic import counted_step

    torch.manual_seed(0)
    model = Transformer(config.model)
    with FlopCounterMode(display=False) as counter:
        counted_step(config.replace(compile=False), model, tokens, special)
    total = counter.get_total_flops()
    graphs = GraphFlops()
    torch._dynamo.reset()
    model.compile_blocks(backend=graphs.backend)
    head = functools.partial(losses.compiled_head_nll, graphs.backend)
    with mock.patch.object(losses, "compiled_head_nll", head):
        counted_step(config.replace(compile=True), model, tokens, special)  # compiles
        graphs.flops = 0
        counted_step(config.replace(compile=True), model, tokens, special)  # counted
    torch._dynamo.reset()
    return {"total_flops": total, "compiled_flops": graphs.flops, "graphs": graphs.graphs,
            "share": graphs.flops / total}  # fmt: skip


def compiled_flops_ratio():
    """The `make bench` row: the share at whole and at chunked logits (the lower of the two)."""
    from .common import Ratio
    from .loops import batches, bench_config

    config = bench_config().replace(alpha=0.5)
    tokens, data = batches(config, 1)
    special = data.corpus.special
    whole = compiled_share(config.replace(loss_chunk_tokens=0), tokens[0], special)
    chunked = compiled_share(config.replace(loss_chunk_tokens=512), tokens[0], special)
    low = min(whole["share"], chunked["share"])
    return Ratio(
        "compiled_flops",
        "share of a training step's matmul FLOPs (forward and backward, alpha 1/2) inside "
        "compiled graphs with train.compile, whole logits and loss_chunk_tokens 512 (the lower)",
        "FLOPs in graphs",
        "FLOPs of the eager step",
        low,
        (low, max(whole["share"], chunked["share"])),
        ">= 1.0",
        {
            "whole_share": whole["share"],
            "chunked_share": chunked["share"],
            "whole_total_flops": whole["total_flops"],
            "chunked_total_flops": chunked["total_flops"],
            "graphs_whole": whole["graphs"],
            "graphs_chunked": chunked["graphs"],
        },
    )
