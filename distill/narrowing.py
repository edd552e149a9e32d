"""Cut a fine-tuned teacher's layers down to a narrower student, keeping the units that carry the most signal.

`--init teacher-layers` starts the student as the teacher with layers dropped (as DistilBERT does). A student
narrower than the teacher (TinyBERT's 312 against MiniLM's 384) keeps a subset of the teacher's units, picked
from the teacher's own activations on a few task batches (structured pruning, as in Michel et al. 2019 / CoFi):
- hidden (residual) dimensions: one set for the whole model, since every layer adds into the same stream;
  ranked by their share of the variance of the LayerNorm inputs, summed over all LayerNorms (the best of the
  rankings compared in docs/qa-student-start.md, "What the width cut costs");
- attention head dimensions, per layer and head (heads are kept, each narrowed to hidden/heads): query/key pairs
  ranked by E[q_j^2] E[k_j^2], value dimensions by E[v_j^2] times the squared norm of the output weights reading them;
- feed-forward neurons, per layer: E[a_n^2] times the squared norm of the output weights reading them.
The queries are scaled by sqrt(d_student / d_teacher) so the attention scores keep the teacher's 1/sqrt(d) scale,
and each LayerNorm's gain and bias are corrected for normalising over fewer dimensions (the mean ratio of the
teacher's standard deviations, and the mean shift, over the kept and all dimensions). When nothing is dropped the
cut is an exact copy. The student then learns back what the cut lost in intermediate-layer distillation, whose
W_h starts as the map putting each kept dimension back in its teacher place (`hidden_dims`).
The teacher runs twice over the probe batches and keeps no activations: the first pass streams per-unit sums
and ranks the units, the second measures the LayerNorm corrections for the dimensions kept, which only then are
known. Its memory is that of one forward pass, whatever the teacher's depth and width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from mobile_app.runtime.errors import UserError
from distill.attention_scores import encoder_of


@dataclass
class _Moments:
    """Running per-unit sums over the real (unpadded) tokens of each probed activation."""
    tokens: int = 0
    sums: dict = field(default_factory=dict)     # name -> sum of x per unit
    squares: dict = field(default_factory=dict)  # name -> sum of x^2 per unit

    def add(self, name: str, values: torch.Tensor) -> None:
        values = values.double()
        self.sums[name] = self.sums.get(name, 0) + values.sum(dim=0)
        self.squares[name] = self.squares.get(name, 0) + (values ** 2).sum(dim=0)

    def mean_square(self, name: str) -> torch.Tensor:
        return self.squares[name] / max(self.tokens, 1)

    def variance(self, name: str) -> torch.Tensor:
        return self.mean_square(name) - (self.sums[name] / max(self.tokens, 1)) ** 2


def _layer_norms(encoder: nn.Module) -> dict[str, nn.LayerNorm]:
    norms = {"embeddings": encoder.embeddings.LayerNorm}
    for i, layer in enumerate(encoder.encoder.layer):
        norms[f"{i}.attention"] = layer.attention.output.LayerNorm
        norms[f"{i}.output"] = layer.output.LayerNorm
    return norms


@torch.no_grad()
def _over_tokens(teacher: nn.Module, batches: list[dict], outputs: dict[str, nn.Module], inputs: dict[str, nn.Module],
                 on_tokens) -> int:
    """Run the teacher over `batches` and call on_tokens(name, rows) with the real tokens' rows of each module's
    output (`outputs`) or first input (`inputs`); returns the number of real tokens. Streams: nothing is kept."""
    mask_now, handles, tokens = {}, [], 0
    for name, module in outputs.items():
        handles.append(module.register_forward_hook(lambda m, args, out, name=name: on_tokens(name, out[mask_now["mask"]])))
    for name, module in inputs.items():
        handles.append(module.register_forward_hook(lambda m, args, out, name=name: on_tokens(name, args[0][mask_now["mask"]])))
    try:
        teacher.eval()
        device = next(teacher.parameters()).device
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            mask_now["mask"] = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
            tokens += int(mask_now["mask"].sum())
            teacher(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch})
    finally:
        for handle in handles:
            handle.remove()
    return tokens


def probe_teacher(teacher: nn.Module, batches: list[dict]) -> _Moments:
    """Per-unit moments over the batches' real tokens: of the attention projections and feed-forward activations
    (by layer, e.g. "0.query"), and of each LayerNorm's inputs (by LayerNorm, e.g. "norm:0.output")."""
    encoder = encoder_of(teacher)
    outputs = {}
    for i, layer in enumerate(encoder.encoder.layer):
        for part in ("query", "key", "value"):
            outputs[f"{i}.{part}"] = getattr(layer.attention.self, part)
        outputs[f"{i}.intermediate"] = layer.intermediate
    moments = _Moments()
    norms = {f"norm:{name}": norm for name, norm in _layer_norms(encoder).items()}
    moments.tokens = _over_tokens(teacher, batches, outputs, norms, moments.add)
    return moments


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest scores, in their original order (so kept units keep their order)."""
    return torch.sort(torch.topk(scores, count).indices).values


def _per_head(scores: torch.Tensor, heads: int, keep: int) -> torch.Tensor:
    """Keep `keep` units in every head; global indices, head by head."""
    width = scores.numel() // heads
    return torch.cat([h * width + _top(scores[h * width:(h + 1) * width], keep) for h in range(heads)])


def _norm_corrections(teacher: nn.Module, batches: list[dict], kept: torch.Tensor, eps: float) -> dict[str, tuple[float, float]]:
    """Per LayerNorm, (scale, shift) so that gain*scale*(x_k - mean_k)/std_k + bias + gain*shift matches, on average
    over the probed tokens, the teacher's gain*(x_k - mean)/std + bias on the kept dimensions. A second pass over the
    batches: the kept dimensions are known only once the first pass has ranked them."""
    totals: dict[str, torch.Tensor] = {}

    def add(name: str, rows: torch.Tensor) -> None:
        rows = rows.double()
        full_mean, full_std = rows.mean(-1), (rows.var(-1, unbiased=False) + eps).sqrt()
        sub = rows[:, kept]
        sub_mean, sub_std = sub.mean(-1), (sub.var(-1, unbiased=False) + eps).sqrt()
        both = torch.stack([(sub_std / full_std).sum(), ((sub_mean - full_mean) / full_std).sum()])
        totals[name] = totals.get(name, 0) + both

    tokens = _over_tokens(teacher, batches, {}, _layer_norms(encoder_of(teacher)), add)
    return {name: tuple(float(v) for v in total / max(tokens, 1)) for name, total in totals.items()}


@dataclass(frozen=True)
class Cut:
    """Which teacher units the student keeps: hidden dims (shared), and per student layer its q/k dims, v dims,
    feed-forward neurons; plus the LayerNorm corrections by teacher LayerNorm name."""
    hidden: torch.Tensor
    query_key: dict[int, torch.Tensor]
    value: dict[int, torch.Tensor]
    neurons: dict[int, torch.Tensor]
    norms: dict[str, tuple[float, float]]
    query_scale: float


def plan_cut(teacher: nn.Module, hidden: int, intermediate: int, layers: list[int], batches: list[dict]) -> Cut:
    """Pick the units a `hidden`-wide student with `intermediate` neurons keeps of teacher layers `layers` (0-based);
    at most the teacher's width, which student.teacher_layer_map checks before a run starts."""
    config = encoder_of(teacher).config
    heads, t_hidden = config.num_attention_heads, config.hidden_size
    if hidden == t_hidden and intermediate == config.intermediate_size:
        every = torch.arange(t_hidden)
        return Cut(every, {i: every for i in layers}, {i: every for i in layers},
                   {i: torch.arange(intermediate) for i in layers}, {}, 1.0)
    if not batches:
        raise UserError("narrowing the teacher's layers needs some training examples to measure its activations")
    moments = probe_teacher(teacher, batches)
    encoder = encoder_of(teacher)
    spread = sum(share / share.sum() for share in (moments.variance(f"norm:{name}") for name in _layer_norms(encoder)))
    kept_hidden = _top(spread, hidden)
    head_keep = hidden // heads
    query_key, value, neurons = {}, {}, {}
    for i in layers:
        layer = encoder.encoder.layer[i]
        query_key[i] = _per_head(moments.mean_square(f"{i}.query") * moments.mean_square(f"{i}.key"), heads, head_keep)
        reads_value = (layer.attention.output.dense.weight.double() ** 2).sum(0)
        value[i] = _per_head(moments.mean_square(f"{i}.value") * reads_value, heads, head_keep)
        reads_neuron = (layer.output.dense.weight.double() ** 2).sum(0)
        neurons[i] = _top(moments.mean_square(f"{i}.intermediate") * reads_neuron, intermediate)
    norms = _norm_corrections(teacher, batches, kept_hidden, config.layer_norm_eps)
    return Cut(kept_hidden, query_key, value, neurons, norms, math.sqrt(head_keep / (t_hidden // heads)))


def _norm_weights(source: dict, prefix: str, cut: Cut, correction_name: str) -> dict:
    scale, shift = cut.norms.get(correction_name, (1.0, 0.0))
    gain, bias = source[f"{prefix}.weight"][cut.hidden], source[f"{prefix}.bias"][cut.hidden]
    return {f"{prefix}.weight": gain * scale, f"{prefix}.bias": bias + gain * shift}


def cut_state_dict(source: dict, cut: Cut, mapping: list[int]) -> dict:
    """The student's weights, named as the student's, from the teacher's state dict `source` and the cut.

    `mapping` is the layer map g(0..M) (1-based teacher layers); student layer m takes teacher layer g(m+1)-1."""
    h = cut.hidden
    weights = {}
    e = "bert.embeddings"
    for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        weights[f"{e}.{table}.weight"] = source[f"{e}.{table}.weight"][:, h]
    if f"{e}.position_ids" in source:
        weights[f"{e}.position_ids"] = source[f"{e}.position_ids"]
    weights.update(_norm_weights(source, f"{e}.LayerNorm", cut, "embeddings"))
    for m, g in enumerate(mapping[1:]):
        t, s = f"bert.encoder.layer.{g - 1}", f"bert.encoder.layer.{m}"
        qk, v, n = cut.query_key[g - 1], cut.value[g - 1], cut.neurons[g - 1]

        def rows_cols(name, rows, cols, scale=1.0):
            weights[f"{s}.{name}.weight"] = source[f"{t}.{name}.weight"][rows][:, cols] * scale
            weights[f"{s}.{name}.bias"] = source[f"{t}.{name}.bias"][rows] * scale
        rows_cols("attention.self.query", qk, h, cut.query_scale)
        rows_cols("attention.self.key", qk, h)
        rows_cols("attention.self.value", v, h)
        rows_cols("attention.output.dense", h, v)
        rows_cols("intermediate.dense", n, h)
        rows_cols("output.dense", h, n)
        for norm, name in (("attention.output.LayerNorm", "attention"), ("output.LayerNorm", "output")):
            weights.update({k.replace(t, s, 1): w for k, w in
                            _norm_weights(source, f"{t}.{norm}", cut, f"{g - 1}.{name}").items()})
    if "bert.pooler.dense.weight" in source:
        weights["bert.pooler.dense.weight"] = source["bert.pooler.dense.weight"][h][:, h]
        weights["bert.pooler.dense.bias"] = source["bert.pooler.dense.bias"][h]
    for head in ("classifier", "qa_outputs"):
        if f"{head}.weight" in source:
            weights[f"{head}.weight"] = source[f"{head}.weight"][:, h]
            weights[f"{head}.bias"] = source[f"{head}.bias"]
    return weights
