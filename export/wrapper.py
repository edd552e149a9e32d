"""The one export-ready form of a student, shared by the TFLite and Core ML exports.

Hugging Face's BERT builds its attention mask with ops the converters reject (`new_ones`, -inf
fills). This wrapper spells the encoder out with plain tensor ops over the student's own weights:
int32 inputs, an additive mask built inside with a finite fp16-safe value, and no dropout. A fine-tuned DistilBERT
(exported as it is) is spelled out the same way over its own module names.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from distill.model_weights import check_weight_files
from mobile_app.runtime.errors import UserError
from distill.heads import head_of_architecture, model_class
from mobile_app.runtime.contract import FAMILY_ARCHITECTURES, MASK_VALUE, OUTPUT_NAMES

QA_OUTPUTS = OUTPUT_NAMES["qa"]
_CLASSES = " or ".join(name for names in FAMILY_ARCHITECTURES.values() for name in names.values())


def head_of(model: nn.Module) -> str:
    """'classification' or 'qa'; anything else is refused with a clear message."""
    family = getattr(model.config, "model_type", None)
    head = head_of_architecture(type(model).__name__, family) if family in FAMILY_ARCHITECTURES else None
    if head is None:
        raise UserError(f"{type(model).__name__} is not a BERT-family classifier or QA model; export needs {_CLASSES}")
    if getattr(model.config, "position_embedding_type", "absolute") != "absolute" or getattr(model.config, "sinusoidal_pos_embds", False):
        raise UserError("only learned absolute position embeddings are supported for export")
    return head


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder under the head: `model.bert`, or a DistilBERT's `model.distilbert`."""
    return model.distilbert if getattr(model.config, "model_type", None) == "distilbert" else model.bert


def word_table(model: nn.Module) -> torch.Tensor:
    """The word embedding table of a classifier or QA model of either family."""
    return encoder_of(model).embeddings.word_embeddings.weight


class ExportableBert(nn.Module):
    """BERT encoder plus task head, written out for converters. Outputs match the HF model in eval mode."""

    def __init__(self, model: nn.Module, mask_value: float = MASK_VALUE, packed_words: bool = False):
        super().__init__()
        self.head = head_of(model)
        self.model = model.eval()
        self.bert = encoder_of(model)
        config = model.config
        self.distil = config.model_type == "distilbert"
        self.layers = self.bert.transformer.layer if self.distil else self.bert.encoder.layer
        self._layer = self._distilbert_layer if self.distil else self._bert_layer
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.mask_value = float(mask_value)
        self.max_positions = config.max_position_embeddings
        self.output_names = OUTPUT_NAMES[self.head]
        # int8-words4: the word table read from its 4-bit packed form (export/packed_words.py)
        self.packed_words = None
        if packed_words:
            from export.packed_words import PackedWordTable

            self.packed_words = PackedWordTable(word_table(model))

    def _context(self, query, key, value, hidden, additive_mask):
        batch, seq, width = hidden.shape

        def split(x):
            return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = split(query(hidden)), split(key(hidden)), split(value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim)) + additive_mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return context.transpose(1, 2).reshape(batch, seq, width)

    def _bert_layer(self, layer, hidden, additive_mask):
        attn, out = layer.attention.self, layer.attention.output
        hidden = out.LayerNorm(out.dense(self._context(attn.query, attn.key, attn.value, hidden, additive_mask)) + hidden)
        ffn = layer.output.dense(layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden)))
        return layer.output.LayerNorm(ffn + hidden)

    def _distilbert_layer(self, layer, hidden, additive_mask):
        attn = layer.attention
        hidden = layer.sa_layer_norm(attn.out_lin(self._context(attn.q_lin, attn.k_lin, attn.v_lin, hidden, additive_mask)) + hidden)
        return layer.output_layer_norm(layer.ffn.lin2(layer.ffn.activation(layer.ffn.lin1(hidden))) + hidden)

    def _pool(self, first):
        """The classifier's input from the [CLS] state: BERT's tanh pooler, DistilBERT's ReLU pre-classifier."""
        if self.distil:
            return torch.relu(self.model.pre_classifier(first))
        return torch.tanh(self.bert.pooler.dense(first))

    def forward(self, input_ids, attention_mask, token_type_ids):
        seq = input_ids.shape[1]
        emb = self.bert.embeddings
        positions = torch.arange(seq, dtype=torch.int32).unsqueeze(0)
        ids = input_ids.to(torch.int32)
        words = emb.word_embeddings(ids) if self.packed_words is None else self.packed_words(ids)
        hidden = words + emb.position_embeddings(positions)
        if self.distil:  # no segment embeddings: the input stays in the signature (the bundle's one input contract)
            hidden = hidden + token_type_ids.to(hidden.dtype)[..., None] * 0.0
        else:
            hidden = hidden + emb.token_type_embeddings(token_type_ids.to(torch.int32))
        hidden = emb.LayerNorm(hidden)
        # (batch, 1, 1, seq): 0 where attended, MASK_VALUE where padded.
        additive_mask = (1.0 - attention_mask.to(hidden.dtype))[:, None, None, :] * self.mask_value
        for layer in self.layers:
            hidden = self._layer(layer, hidden, additive_mask)
        if self.head == "classification":
            return self.model.classifier(self._pool(hidden[:, 0]))
        start, end = self.model.qa_outputs(hidden).split(1, dim=-1)
        return start.squeeze(-1), end.squeeze(-1)

    def check_bucket(self, seq_len: int) -> None:
        if seq_len > self.max_positions:
            raise UserError(f"bucket {seq_len} is longer than the model's {self.max_positions} position embeddings; use buckets <= {self.max_positions}")

    def example_inputs(self, seq_len: int, batch: int = 1):
        """Valid int32 inputs of one bucket, for tracing."""
        self.check_bucket(seq_len)
        ids = torch.randint(1, self.bert.embeddings.word_embeddings.num_embeddings, (batch, seq_len), dtype=torch.int32)
        mask = torch.ones(batch, seq_len, dtype=torch.int32)
        mask[:, seq_len // 2:] = 0
        return ids, mask, torch.zeros(batch, seq_len, dtype=torch.int32)


def load_student(student_dir) -> nn.Module:
    """Load a student folder (safetensors only, no remote code) as its classifier or QA model."""
    from pathlib import Path

    from transformers import AutoConfig

    path = Path(student_dir)
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a model folder (no config.json); pass the output folder of `python -m distill`")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path / 'config.json'} ({str(error).splitlines()[0][:120]}); re-save the student folder") from None
    if config.model_type not in FAMILY_ARCHITECTURES:
        raise UserError(f"{path} holds a {config.model_type!r} model, not BERT-family; export supports BERT and DistilBERT "
                        "classifiers and QA models")
    arch = (config.architectures or [""])[0]
    head = head_of_architecture(arch, config.model_type)
    if head is None:
        raise UserError(f"{path} holds a {arch or 'headless'} model; export needs {_CLASSES}")
    if not any(path.glob("*.safetensors")):
        raise UserError(f"{path} has no safetensors weights; save the model with safe_serialization (pickle weights are refused)")
    check_weight_files(path)
    try:
        model = model_class(head, config.model_type).from_pretrained(path, use_safetensors=True, trust_remote_code=False).eval()
    except Exception as error:  # safetensors' own error type for a truncated or corrupt file, OSError, shape mismatches
        raise UserError(f"cannot load the student weights in {path} ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
                        "the file is truncated or corrupt: copy it again or re-run distill") from None
    check_finite(model, path)
    return model


def check_finite(model: nn.Module, path) -> None:
    """A NaN or infinity in any weight would export a model that answers nothing: refuse it, naming the tensor."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{path}: tensor {name} holds NaN or infinite values; the student is broken (its training diverged), "
                            "retrain it before exporting")
