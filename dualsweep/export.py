"""A trained run as a Hugging Face model folder that `transformers` loads with no custom code.

dualsweep's transformer is a Llama in all but names: pre-norm RMSNorm blocks, rotary
embeddings rotating (first half, second half) channel pairs (Llama's `rotate_half`, so no
permutation), SwiGLU, no biases, tied or untied head. The export splits the fused qkv matrix
into q, k and v (rows in that order), renames the rest, and writes:

- `config.json` (`LlamaForCausalLM`), `model.safetensors` (float32), `generation_config.json`;
- the tokenizer (`tokenizer.json` with `tokenizer_config.json` and `special_tokens_map.json`:
  `AutoTokenizer` gives the run's ids);
- `README.md`, a model card: alpha, R, tokens, corpus hash, code version, held-out losses,
  and how to use the masked-diffusion mode (bidirectional attention and the mask token),
  which stock Llama code does not do on its own.

Needs `safetensors` (in the `hf` extra, with transformers); writing needs no transformers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

from dualsweep.config import ConfigError, ModelConfig
from dualsweep.results import atomic_write_text
from dualsweep.schema import SUMMARY_FILE

WEIGHTS_FILE = "model.safetensors"


def llama_config(model: ModelConfig, special) -> dict:
    """The `config.json` of the equivalent `LlamaForCausalLM`."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": model.vocab_size,
        "hidden_size": model.d_model,
        "intermediate_size": model.ffn_hidden,
        "num_hidden_layers": model.n_layers,
        "num_attention_heads": model.n_heads,
        "num_key_value_heads": model.n_heads,
        "head_dim": model.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": model.seq_len,
        "rms_norm_eps": model.norm_eps,
        "rope_theta": model.rope_theta,  # transformers 4.x
        "rope_parameters": {"rope_type": "default", "rope_theta": model.rope_theta},  # 5.x
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": model.tie_embeddings,
        "initializer_range": model.init_std,
        "bos_token_id": special.bos,
        "eos_token_id": special.eos,
        "pad_token_id": special.pad,
        "mask_token_id": special.mask,
        "torch_dtype": "float32",
        "use_cache": True,
    }


def llama_state_dict(
    weights: dict[str, torch.Tensor], model: ModelConfig
) -> dict[str, torch.Tensor]:
    """dualsweep's state_dict under Llama's names (a tied head is not written twice)."""
    C = model.d_model
    out = {"model.embed_tokens.weight": weights["embed.weight"]}
    for i in range(model.n_layers):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = weights[ours + "attn.qkv.weight"].split(C, dim=0)  # rows: q, k, v
        out |= {
            theirs + "input_layernorm.weight": weights[ours + "attn_norm.weight"],
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": weights[ours + "attn.out.weight"],
            theirs + "post_attention_layernorm.weight": weights[ours + "mlp_norm.weight"],
            theirs + "mlp.gate_proj.weight": weights[ours + "mlp.gate.weight"],
            theirs + "mlp.up_proj.weight": weights[ours + "mlp.up.weight"],
            theirs + "mlp.down_proj.weight": weights[ours + "mlp.down.weight"],
        }
    out["model.norm.weight"] = weights["final_norm.weight"]
    if not model.tie_embeddings:
        out["lm_head.weight"] = weights["head.weight"]
    return {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in out.items()}


def tokenizer_files(tokenizer_path: Path, special, seq_len: int) -> dict[str, dict]:
    """`tokenizer_config.json` and `special_tokens_map.json` of a fast tokenizer over the
    run's tokenizer.json, its specials named by their ids."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    names = {
        role: tokenizer.id_to_token(getattr(special, role))
        for role in ("pad", "bos", "eos", "mask")
    }
    specials = {f"{role}_token": token for role, token in names.items()}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": seq_len,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        **specials,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": specials}


def export_run(
    run_dir: str | Path, out_dir: str | Path, *, log: Callable[[str], None] = print
) -> Path:
    """Write the run's Hugging Face folder into `out_dir` (created; refused if it holds files)."""
    from safetensors.torch import save_file

    from dualsweep.evaluate.loaded import load_run
    from dualsweep.schema import TOKENIZER_FILE

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"--out: {out_dir} exists and is not an empty folder")
    run = load_run(run_dir, "cpu", log=log)
    model = run.config.model
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = llama_state_dict(run.model.state_dict(), model)
    save_file(weights, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    _write_json(out_dir / "config.json", llama_config(model, run.special))
    generation = {
        "bos_token_id": run.special.bos,
        "eos_token_id": run.special.eos,
        "pad_token_id": run.special.pad,
        "do_sample": False,
    }
    _write_json(out_dir / "generation_config.json", generation)
    if run.tokenizer is not None:
        (out_dir / TOKENIZER_FILE).write_bytes((run_dir / TOKENIZER_FILE).read_bytes())
        for name, content in tokenizer_files(
            run_dir / TOKENIZER_FILE, run.special, model.seq_len
        ).items():
            _write_json(out_dir / name, content)
    else:
        log(f"{run_dir}: no tokenizer.json (a token-shard corpus): the export holds no tokenizer")
    atomic_write_text(out_dir / "README.md", model_card(run))
    log(
        f"exported {sum(t.numel() for t in weights.values()):,} parameters as LlamaForCausalLM "
        f"-> {out_dir}"
    )
    return out_dir


def _write_json(path: Path, content: dict) -> None:
    atomic_write_text(path, json.dumps(content, indent=2) + "\n")


def model_card(run) -> str:
    """The export's README.md: what the model is, how it was trained, how to use both modes."""
    import pandas as pd

    config, special = run.config, run.special
    summary_path = run.run_dir / SUMMARY_FILE
    row = pd.read_parquet(summary_path).iloc[0].to_dict() if summary_path.is_file() else {}

    def value(name: str, fmt: str = "{}") -> str:
        v = row.get(name)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "not recorded"
        return fmt.format(v)

    held_out = [
        f"- `{name}`: {value(name, '{:.4f}')} nats/token"
        for name in sorted(row)
        if name.startswith("final_held_out_") and not name.endswith("_stderr")
    ]
    return f"""# dualsweep run {value("run_key")}

A {value("n_parameters", "{:,}")}-parameter transformer trained with dualsweep on the
dual objective `alpha * L_AR + (1 - alpha) * L_MD` (Samuel & Charpentier, "Dual-objective
Language Models", ICLR 2026): next-token prediction with causal attention, and masked
diffusion as masked next-token prediction with bidirectional attention. One set of weights
serves both.

| | |
|---|---|
| alpha (AR weight) | {config.objective.alpha:g} |
| objectives | {", ".join(config.objective.objectives)} |
| data repetitions R | {config.data.repetitions} |
| training tokens | {value("tokens", "{:,}")} ({value("unique_tokens", "{:,}")} unique, {value("epochs", "{:.2f}")} epochs) |
| corpus | {config.data.source}, hash {value("corpus_hash")} |
| code version | {value("code_version")} |
| run key | {value("run_key")} |

Held-out losses (the AR negative log-likelihood and the MD ELBO bound the same quantity):

{chr(10).join(held_out) or "- not recorded"}

## Autoregressive use

A stock `LlamaForCausalLM`: `AutoModelForCausalLM.from_pretrained(path)` and
`AutoTokenizer.from_pretrained(path)`; its causal logits equal dualsweep's. Training documents
follow an end-of-document token, so start a prompt with `{special.eos}` (`eos_token_id`).

## Masked-diffusion use

Masked diffusion needs two things stock Llama code does not do by itself: bidirectional
attention, and the mask token (id {special.mask}, in `config.json` as `mask_token_id`). The
model predicts token `i + 1` from position `i`: to fill a masked token, read the logits one
position before it.

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
ids = torch.tensor([[{special.eos}, *tokenizer.encode("The answer is")] + [{special.mask}] * 4])
T = ids.shape[1]
everywhere = torch.ones(1, 1, T, T, dtype=torch.bool)  # a 4-D mask is used as given
logits = model(ids, attention_mask=everywhere).logits
# logits[0, i] is the distribution of token i + 1: unmask a few, repeat (see `dualsweep generate --mode md`)
```

`dualsweep generate RUN --mode md` samples this way from the run folder directly.
"""
