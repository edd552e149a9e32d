"""Pre-softmax attention scores and hidden states of a Hugging Face BERT or DistilBERT, for the intermediate losses.

transformers' `output_attentions` returns post-softmax probabilities, but TinyBERT matches the scores
before the softmax. Forward hooks capture each layer's query and key projections during the normal forward
pass, and the scores are rebuilt as q k^T / sqrt(d) + additive mask (mask value -1e4 as in the official code).
"""
from __future__ import annotations

import math

import torch

from mobile_app.runtime.contract import MASK_VALUE
from torch import nn

ADDITIVE_MASK_VALUE = MASK_VALUE


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder inside a task model (BERT's `bert`, DistilBERT's `distilbert`), or the model itself when it is one."""
    for name in ("bert", "distilbert"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    return model


def takes_token_types(model: nn.Module) -> bool:
    """False for DistilBERT, which has no token type embeddings and no token_type_ids argument."""
    return getattr(getattr(model, "config", None), "model_type", "bert") != "distilbert"


def forward_inputs(model: nn.Module, batch: dict) -> dict:
    """The batch as `model` takes it: without token_type_ids for a DistilBERT (a teacher of either family)."""
    return batch if takes_token_types(model) else {k: v for k, v in batch.items() if k != "token_type_ids"}


def _layers(encoder: nn.Module):
    """The transformer layers of a BertModel (encoder.layer) or a DistilBertModel (transformer.layer)."""
    return encoder.encoder.layer if hasattr(encoder, "encoder") else encoder.transformer.layer


def _query_key(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    """A layer's query and key projections: BERT's attention.self.query/key, DistilBERT's attention.q_lin/k_lin."""
    attention = layer.attention
    if hasattr(attention, "self"):
        return attention.self.query, attention.self.key
    return attention.q_lin, attention.k_lin


def freeze_word_embeddings(model: nn.Module) -> None:
    """Keep the word table fixed: no gradient, so the optimiser holds no state for its vocab x hidden weights."""
    encoder_of(model).embeddings.word_embeddings.weight.requires_grad_(False)


def attention_scores(query: torch.Tensor, key: torch.Tensor, attention_mask: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, heads, seq, seq) scores from projected query/key (batch, seq, hidden) and a 0/1 mask."""
    batch, seq, width = query.shape
    head_dim = width // num_heads

    def split(x):
        return x.reshape(batch, seq, num_heads, head_dim).transpose(1, 2)

    scores = torch.matmul(split(query), split(key).transpose(-1, -2)) / math.sqrt(head_dim)
    additive = (1.0 - attention_mask.to(scores.dtype))[:, None, None, :] * ADDITIVE_MASK_VALUE
    return scores + additive


def forward_with_internals(model: nn.Module, batch: dict, score_layers=None) -> tuple[object, list[torch.Tensor], list]:
    """Run `model(**batch)` once; return (outputs, hidden states [embeddings, layer 1..N], scores [layer 1..N]).

    `score_layers`: the 1-based layers whose scores are wanted (default all); the others are None, since each
    (batch, heads, seq, seq) tensor is costly and the loss reads only the mapped teacher layers."""
    encoder = encoder_of(model)
    layers = len(_layers(encoder))
    wanted = set(range(1, layers + 1) if score_layers is None else score_layers)
    captured: dict[tuple[int, str], torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(_layers(encoder)):
        if index + 1 not in wanted:
            continue
        for name, projection in zip(("query", "key"), _query_key(layer)):
            def hook(module, inputs, output, key=(index, name)):
                captured[key] = output
            handles.append(projection.register_forward_hook(hook))
    try:
        outputs = model(**forward_inputs(model, batch), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    heads = encoder.config.num_attention_heads
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones(batch["input_ids"].shape, dtype=torch.long, device=batch["input_ids"].device)
    scores = [attention_scores(captured[(i, "query")], captured[(i, "key")], mask, heads) if i + 1 in wanted else None
              for i in range(layers)]
    return outputs, list(outputs.hidden_states), scores
