"""TinyBERT losses, the layer mapping and the pre-softmax score helper against hand computations."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from mobile_app.runtime.errors import UserError
from distill.attention_scores import forward_with_internals
from distill.losses import attention_loss, hidden_loss, layer_mapping, prediction_loss, soft_cross_entropy


def test_layer_mapping_uniform_and_floor():
    assert layer_mapping(4, 12) == [0, 3, 6, 9, 12]
    assert layer_mapping(3, 6) == [0, 2, 4, 6]
    assert layer_mapping(4, 6) == [0, 1, 3, 4, 6]   # floor(m * 6 / 4): 1.5 -> 1, 4.5 -> 4
    assert layer_mapping(6, 6) == list(range(7))
    with pytest.raises(UserError, match="more layers|only"):
        layer_mapping(8, 6)


def test_soft_cross_entropy_by_hand():
    student = torch.tensor([[math.log(3.0), 0.0]])
    teacher = torch.tensor([[0.0, math.log(3.0)]])          # softmax -> [0.25, 0.75]
    expected = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert soft_cross_entropy(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    # temperature 2: teacher softmax of [0, ln3 / 2] = [1/(1+sqrt3), sqrt3/(1+sqrt3)], student of [ln3 / 2, 0]
    p = [1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))]
    expected_t2 = -(p[0] * math.log(p[1]) + p[1] * math.log(p[0]))
    assert soft_cross_entropy(student, teacher, temperature=2.0).item() == pytest.approx(expected_t2, rel=1e-6)


def test_prediction_loss_is_mean_of_start_and_end_for_qa():
    start_s, start_t = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]])
    end_s, end_t = torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, math.log(3.0)]])
    both = prediction_loss((start_s, end_s), (start_t, end_t))
    assert both.item() == pytest.approx((math.log(2.0) + (-(0.25 * math.log(0.75) + 0.75 * math.log(0.25)))) / 2, rel=1e-6)


def test_attention_loss_zeroes_masked_scores_and_sums_layers():
    # one layer pair: scores (batch 1, head 1, 1 x 2); the masked second key carries about -1e4 in both
    student = [torch.tensor([[[[1.0, -1e4 + 5.0]]]])]
    teacher = [torch.tensor([[[[0.0, 3.0]]]]), torch.tensor([[[[3.0, -1e4]]]])]
    # student layer 1 maps to teacher layer 2: MSE([1, 0], [3, 0]) = 2
    assert attention_loss(student, teacher, [0, 2]).item() == pytest.approx(2.0)
    two = attention_loss(student * 2, teacher, [0, 1, 2])
    assert two.item() == pytest.approx(((1 - 0) ** 2 + (0 - 3) ** 2) / 2 + 2.0)  # teacher layer 1 unmasked: 3 vs 0


def test_hidden_loss_projects_student_and_includes_embeddings():
    projection = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0], [2.0]]))
    student = [torch.tensor([[[1.0]]]), torch.tensor([[[2.0]]])]             # embeddings, layer 1
    teacher = [torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[0.0, 0.0]]]), torch.tensor([[[2.0, 5.0]]])]
    # m=0: [1,2] vs [1,2] -> 0; m=1 -> teacher 2: [2,4] vs [2,5] -> 0.5
    assert hidden_loss(student, teacher, [0, 2], projection).item() == pytest.approx(0.5)


def test_pre_softmax_scores_match_hand_computation():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                        attn_implementation="eager")
    model = BertModel(config).eval()
    batch = {"input_ids": torch.tensor([[2, 7, 9, 0]]), "attention_mask": torch.tensor([[1, 1, 1, 0]])}
    outputs, hidden, scores = forward_with_internals(model, batch)
    assert len(hidden) == 3 and len(scores) == 2
    for index, layer in enumerate(model.encoder.layer):
        attn = layer.attention.self
        h = hidden[index][0]                                   # the layer's input (seq, 8)
        q, k = h @ attn.query.weight.T + attn.query.bias, h @ attn.key.weight.T + attn.key.bias
        for head in range(2):
            qs, ks = q[:, head * 4:(head + 1) * 4], k[:, head * 4:(head + 1) * 4]
            expected = qs @ ks.T / 2.0                           # sqrt(head_dim 4) = 2
            expected[:, 3] += -1e4                               # the padded key
            assert torch.allclose(scores[index][0, head], expected, atol=1e-4)
        probs = model(**batch, output_attentions=True).attentions[index]
        assert torch.allclose(torch.softmax(scores[index], -1), probs, atol=1e-6)


def test_the_intermediate_loss_reads_only_the_mapped_teacher_layers_and_is_unchanged_by_skipping_the_rest():
    from distill.objectives import IntermediateObjective

    torch.manual_seed(1)
    teacher = BertModel(BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32)).eval()
    student = BertModel(BertConfig(vocab_size=60, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16)).eval()
    batch = {"input_ids": torch.randint(1, 60, (3, 7)), "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])}
    objective = IntermediateObjective(student, teacher)
    assert objective.mapping == [0, 3, 6]
    with torch.no_grad():
        _, _, every = forward_with_internals(teacher, batch)
        _, _, mapped = forward_with_internals(teacher, batch, score_layers=objective.mapping[1:])
        _, student_hidden, student_scores = forward_with_internals(student, batch)
        _, teacher_hidden, _ = forward_with_internals(teacher, batch)
    assert [s is None for s in mapped] == [True, True, False, True, True, False]
    assert all(torch.equal(mapped[i], every[i]) for i in (2, 5))
    expected = attention_loss(student_scores, every, objective.mapping) + hidden_loss(student_hidden, teacher_hidden, objective.mapping,
                                                                                     objective.projection)
    assert objective(**batch).item() == pytest.approx(expected.item(), rel=1e-6)
