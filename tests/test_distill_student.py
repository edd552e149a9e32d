"""Student shapes, configs and initialisation from a general checkpoint folder (how a hub id is loaded too)."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertModel

from mobile_app.runtime.errors import UserError
from distill.student import PRESETS, check_general_source, load_general_encoder, new_student, resolve_shape, student_config


def test_presets_and_custom_shapes():
    assert resolve_shape("tinybert-4l-312d") == PRESETS["tinybert-4l-312d"]
    assert (PRESETS["tinybert-4l-312d"].layers, PRESETS["tinybert-4l-312d"].hidden, PRESETS["tinybert-4l-312d"].intermediate) == (4, 312, 1200)
    assert (PRESETS["tinybert-6l-768d"].layers, PRESETS["tinybert-6l-768d"].hidden, PRESETS["tinybert-6l-768d"].intermediate) == (6, 768, 3072)
    assert resolve_shape({"layers": 2, "hidden": 64, "heads": 4, "intermediate": 128}).hidden == 64
    with pytest.raises(UserError, match="multiple"):
        resolve_shape({"layers": 2, "hidden": 66, "heads": 4, "intermediate": 128})
    with pytest.raises(UserError, match="keys"):
        resolve_shape({"layers": 2})


def test_student_config_shares_the_teacher_vocab_and_carries_labels():
    teacher = BertConfig(vocab_size=30522, hidden_size=384, num_attention_heads=12, num_hidden_layers=6, intermediate_size=1536)
    config = student_config(PRESETS["tinybert-4l-312d"], teacher, "classification", ("ham", "spam"))
    assert config.vocab_size == 30522 and config.num_hidden_layers == 4 and config.hidden_size == 312
    assert config.id2label == {0: "ham", 1: "spam"} and config.label2id == {"ham": 0, "spam": 1}
    model = new_student(config, seed=1)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, new_student(config, seed=1).bert.embeddings.word_embeddings.weight)


def test_general_checkpoint_folder_loads_its_encoder(tmp_path):
    teacher = BertConfig(vocab_size=100, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32)
    shape = resolve_shape({"layers": 1, "hidden": 8, "heads": 2, "intermediate": 16})
    general_config = student_config(shape, teacher, "qa")
    torch.manual_seed(5)
    general = BertModel(general_config)
    general.save_pretrained(tmp_path / "general", safe_serialization=True)
    # the original TinyBERT configs have no model_type: drop it to check they are still read
    config_file = tmp_path / "general" / "config.json"
    values = json.loads(config_file.read_text())
    values.pop("model_type", None)
    config_file.write_text(json.dumps(values))
    check_general_source(tmp_path / "general", shape)
    student = new_student(student_config(shape, teacher, "classification", ("a", "b")), seed=0)
    info = load_general_encoder(student, tmp_path / "general")
    assert info["tensors"] > 10
    assert torch.equal(student.bert.encoder.layer[0].attention.self.query.weight, general.encoder.layer[0].attention.self.query.weight)
    with pytest.raises(UserError, match="does not fit|matching"):
        check_general_source(tmp_path / "general", resolve_shape({"layers": 2, "hidden": 8, "heads": 2, "intermediate": 16}))
    with pytest.raises(UserError, match="cannot"):
        load_general_encoder(student, tmp_path / "missing")


def test_teacher_layers_start_copies_the_mapped_layers_embeddings_and_head():
    from transformers import BertForQuestionAnswering

    from distill.losses import layer_mapping
    from distill.student import load_teacher_layers, teacher_layer_map

    torch.manual_seed(3)
    t_config = BertConfig(vocab_size=100, hidden_size=16, num_attention_heads=2, num_hidden_layers=3, intermediate_size=32)
    teacher = BertForQuestionAnswering(t_config).eval()
    shape = resolve_shape({"layers": 2, "hidden": 16, "heads": 2, "intermediate": 32})
    student = new_student(student_config(shape, t_config, "qa"), seed=0)
    assert teacher_layer_map(shape, t_config) == layer_mapping(2, 3)
    info, hidden_dims = load_teacher_layers(student, teacher, layer_mapping(2, 3))
    assert hidden_dims == list(range(16)) and "narrowed_from" not in info
    assert info["teacher_layers"] == [1, 3]  # g(m) = floor(m * 3 / 2): layer 2 is dropped
    for m, n in ((0, 0), (1, 2)):
        assert torch.equal(student.bert.encoder.layer[m].output.dense.weight, teacher.bert.encoder.layer[n].output.dense.weight)
    assert torch.equal(student.qa_outputs.weight, teacher.qa_outputs.weight)
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    # as deep as the teacher, the copy is the teacher
    full = new_student(student_config(resolve_shape({"layers": 3, "hidden": 16, "heads": 2, "intermediate": 32}), t_config, "qa"), seed=0)
    load_teacher_layers(full, teacher, layer_mapping(3, 3))
    ids = torch.randint(5, 100, (2, 9))
    assert torch.allclose(full.eval()(input_ids=ids).start_logits, teacher(input_ids=ids).start_logits, atol=1e-6)
    with pytest.raises(UserError, match=r"at most as wide as the teacher.*--student 2x16x2x32"):
        teacher_layer_map(resolve_shape({"layers": 2, "hidden": 24, "heads": 2, "intermediate": 32}), t_config)
    classifier = new_student(student_config(shape, t_config, "classification", ("a", "b")), seed=0)
    with pytest.raises(UserError, match="same head"):
        load_teacher_layers(classifier, teacher, layer_mapping(2, 3))


def _probe(vocab: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(4, 12, dtype=torch.long)
    mask[1, 8:] = 0
    return [{"input_ids": torch.randint(5, vocab, (4, 12), generator=generator), "attention_mask": mask,
             "token_type_ids": torch.zeros(4, 12, dtype=torch.long)} for _ in range(2)]


def test_narrowing_keeps_the_units_that_carry_signal_and_drops_dead_ones_losslessly():
    from transformers import BertForQuestionAnswering

    from distill.losses import layer_mapping
    from distill.student import load_teacher_layers

    torch.manual_seed(4)
    t_config = BertConfig(vocab_size=100, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=32)
    teacher = BertForQuestionAnswering(t_config).eval()
    state = teacher.state_dict()
    dead_neurons = [3, 7, 8, 20, 21, 30]
    with torch.no_grad():
        for i in range(2):
            state[f"bert.encoder.layer.{i}.output.dense.weight"][:, dead_neurons] = 0  # neurons nothing reads
    ids = torch.randint(5, 100, (3, 10))
    # feed-forward neurons only: dropping neurons whose output nothing reads changes nothing
    student = new_student(student_config(resolve_shape({"layers": 2, "hidden": 16, "heads": 2, "intermediate": 26}), t_config, "qa"), 0)
    info, hidden_dims = load_teacher_layers(student, teacher, layer_mapping(2, 2), _probe(100))
    assert info["narrowed_from"] == {"hidden": 16, "intermediate": 32} and hidden_dims == list(range(16))
    assert torch.allclose(student.eval()(input_ids=ids).start_logits, teacher(input_ids=ids).start_logits, atol=1e-5)

    # hidden dims 12..15 and head dims 6, 7 of each head carry nothing: they are the ones dropped, and what is left
    # computes the teacher's scores once the LayerNorms are corrected for normalising over 12 instead of 16
    # dimensions (uncorrected, the logits are off by 2e-2)
    dead_hidden, dead_head = list(range(12, 16)), [6, 7, 14, 15]
    with torch.no_grad():
        for table in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            state[f"bert.embeddings.{table}.weight"][:, dead_hidden] = 0
        for prefix in ["bert.embeddings.LayerNorm"] + [f"bert.encoder.layer.{i}.{n}.LayerNorm" for i in range(2)
                                                       for n in ("attention.output", "output")]:
            state[f"{prefix}.weight"][dead_hidden] = 0
            state[f"{prefix}.bias"][dead_hidden] = 0
        for i in range(2):
            layer = f"bert.encoder.layer.{i}"
            for name in ("attention.output.dense", "output.dense"):
                state[f"{layer}.{name}.weight"][dead_hidden] = 0
                state[f"{layer}.{name}.bias"][dead_hidden] = 0
            for name in ("query", "key", "value"):
                state[f"{layer}.attention.self.{name}.weight"][dead_head] = 0
                state[f"{layer}.attention.self.{name}.bias"][dead_head] = 0
    narrow = new_student(student_config(resolve_shape({"layers": 2, "hidden": 12, "heads": 2, "intermediate": 26}), t_config, "qa"), 0)
    info, hidden_dims = load_teacher_layers(narrow, teacher, layer_mapping(2, 2), _probe(100))
    assert hidden_dims == list(range(12)) and info["probe_batches"] == 2
    query, t_query = narrow.bert.encoder.layer[1].attention.self.query.weight, state["bert.encoder.layer.1.attention.self.query.weight"]
    kept_head_dims = [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]
    assert torch.allclose(query, t_query[kept_head_dims][:, :12] * (6 / 8) ** 0.5)  # scores keep the teacher's 1/sqrt(8)
    got, want = narrow.eval()(input_ids=ids).start_logits, teacher(input_ids=ids).start_logits
    assert torch.allclose(got, want, atol=1e-3)
