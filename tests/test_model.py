"""The transformer's attention modes: causal, bidirectional, prefix-LM, per sample."""

from __future__ import annotations

import pytest
import torch

from dualsweep.config import ModelConfig
from dualsweep.model import BIDIRECTIONAL, CAUSAL, Transformer, attention_mask

T = 12


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, n_layers=2, d_model=32, n_heads=4, ffn_hidden=64, seq_len=T)
    return Transformer(config).eval()


def tokens(batch=1, seed=0):
    return torch.randint(4, 50, (batch, T), generator=torch.Generator().manual_seed(seed))


def changed_positions(model, x, y, prefix) -> list[int]:
    """Positions whose logits differ between inputs x and y."""
    with torch.no_grad():
        a, b = model(x, prefix), model(y, prefix)
    return [i for i in range(T) if not torch.allclose(a[0, i], b[0, i], atol=1e-6)]


def with_token_changed(x, position):
    y = x.clone()
    y[0, position] = 4 + (y[0, position] - 4 + 1) % 46
    return y


def test_attention_mask_by_hand():
    mask = attention_mask(torch.tensor([0, 2, 4]), 4)[:, 0].int().tolist()
    causal = [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    prefix2 = [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    full = [[1] * 4] * 4
    assert mask == [causal, prefix2, full]


def test_causal_logits_ignore_the_future(model):
    x = tokens()
    for j in (3, 7, T - 1):
        assert changed_positions(model, x, with_token_changed(x, j), CAUSAL) == list(range(j, T))


def test_bidirectional_logits_see_everything(model):
    x = tokens()
    for j in (0, 5, T - 1):
        assert changed_positions(model, x, with_token_changed(x, j), BIDIRECTIONAL) == list(
            range(T)
        )


def test_prefix_lm(model):
    x, k = tokens(), 5
    # A token inside the prefix is seen by every position, earlier prefix positions included.
    assert changed_positions(model, x, with_token_changed(x, 2), k) == list(range(T))
    # The last prefix token is seen by the whole prefix and everything after it.
    assert changed_positions(model, x, with_token_changed(x, k - 1), k) == list(range(T))
    # After the prefix, attention is causal: a token at j >= k is seen from j on only.
    assert changed_positions(model, x, with_token_changed(x, k), k) == list(range(k, T))
    assert changed_positions(model, x, with_token_changed(x, 9), k) == list(range(9, T))


def test_per_sample_modes_in_one_batch_equal_separate_forwards(model):
    x = tokens(batch=3, seed=1)
    prefixes = torch.tensor([CAUSAL, T, 6])
    with torch.no_grad():
        mixed = model(x, prefixes)
        separate = [model(x[0:1], CAUSAL), model(x[1:2], BIDIRECTIONAL), model(x[2:3], 6)]
    for row, expected in enumerate(separate):
        torch.testing.assert_close(mixed[row : row + 1], expected, atol=1e-5, rtol=1e-5)


def test_whole_batch_fast_paths_equal_explicit_masks(model):
    x = tokens(batch=2, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, CAUSAL), model(x, torch.zeros(2, dtype=torch.long)))
        torch.testing.assert_close(model(x, BIDIRECTIONAL), model(x, torch.full((2,), T)))


def test_document_masking_keeps_documents_apart(model):
    x = tokens()
    docs = torch.tensor([[0] * 5 + [1] * 7])
    y = with_token_changed(x, 8)  # a token of the second document
    with torch.no_grad():
        a, b = model(x, BIDIRECTIONAL, docs), model(y, BIDIRECTIONAL, docs)
    assert torch.equal(a[0, :5], b[0, :5])  # the first document never sees it
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_tied_and_untied_heads():
    tied = Transformer(ModelConfig(vocab_size=50, n_layers=1, d_model=16, n_heads=2, ffn_hidden=32))
    untied = Transformer(
        ModelConfig(
            vocab_size=50, n_layers=1, d_model=16, n_heads=2, ffn_hidden=32, tie_embeddings=False
        )
    )
    assert tied.head.weight is tied.embed.weight
    assert untied.head.weight is not untied.embed.weight
    # Per block: qkv 16*48 + out 16*16 + gate/up 2*16*32 + down 32*16 + two norms 2*16.
    block = 16 * 48 + 16 * 16 + 2 * 16 * 32 + 32 * 16 + 2 * 16
    assert tied.num_parameters() == 50 * 16 + block + 16
    assert untied.num_parameters() == 2 * 50 * 16 + block + 16
    assert (
        tied.num_parameters(non_embedding=True)
        == untied.num_parameters(non_embedding=True)
        == block + 16
    )


def test_too_long_a_sequence_is_refused(model):
    with pytest.raises(ValueError, match="exceeds seq_len"):
        model(torch.zeros(1, T + 1, dtype=torch.long))


def test_logits_at_chosen_places_equal_the_full_logits_there():
    torch.manual_seed(0)
    model = Transformer(
        ModelConfig(vocab_size=40, n_layers=2, d_model=16, n_heads=2, ffn_hidden=32, seq_len=12)
    )
    tokens = torch.randint(0, 40, (3, 12))
    rows, positions = torch.tensor([0, 0, 2, 1]), torch.tensor([3, 11, 0, 5])
    for prefix in (CAUSAL, BIDIRECTIONAL, torch.tensor([4, 0, 12])):
        full = model(tokens, prefix)
        chosen = model(tokens, prefix, at=(rows, positions))
        assert chosen.shape == (4, 40)
        torch.testing.assert_close(chosen, full[rows, positions], rtol=1e-5, atol=1e-6)
