"""Student shapes, configs and initialisation from a general checkpoint folder (how a hub id is loaded too)."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertModel

from distill.errors import UserError
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
    info = load_teacher_layers(student, teacher, layer_mapping(2, 3))
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
    with pytest.raises(UserError, match=r"as wide as the teacher.*--student 2x16x2x32"):
        teacher_layer_map(resolve_shape({"layers": 2, "hidden": 8, "heads": 2, "intermediate": 32}), t_config)
    classifier = new_student(student_config(shape, t_config, "classification", ("a", "b")), seed=0)
    with pytest.raises(UserError, match="same head"):
        load_teacher_layers(classifier, teacher, layer_mapping(2, 3))
