"""The TinyBERT student: its shape (a preset or a custom one), its config, and its initial weights.

Weights start random, from a general TinyBERT checkpoint (a local folder or a hub id such as
`huawei-noah/TinyBERT_General_4L_312D`), from our own general distillation output (distill/general.py), or from
the fine-tuned teacher itself with layers dropped (`teacher-layers`, as DistilBERT starts; a narrower student keeps
the teacher units that carry the most signal, distill/narrowing.py). Only the encoder
(embeddings + transformer layers) is taken from a general checkpoint; the task head stays new.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from distill.model_weights import check_weight_files
from mobile_app.runtime.errors import UserError
from distill.heads import head_of_architecture, model_class
from mobile_app.runtime.contract import HEAD_ARCHITECTURES

HUB_GENERAL_TINYBERT = "huawei-noah/TinyBERT_General_4L_312D"
TEACHER_LAYERS = "teacher-layers"


@dataclass(frozen=True)
class StudentShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int

    def check(self) -> "StudentShape":
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise UserError(f"student {name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise UserError(f"student hidden size {self.hidden} is not a multiple of its {self.heads} heads; change one of them")
        return self


PRESETS: dict[str, StudentShape] = {
    "tinybert-4l-312d": StudentShape(layers=4, hidden=312, heads=12, intermediate=1200),
    "tinybert-6l-768d": StudentShape(layers=6, hidden=768, heads=12, intermediate=3072),
    # the offline MiniLM-L6-H384 teacher's width with 4 of its 6 layers: `--init teacher-layers` copies them whole
    "minilm-4l-384d": StudentShape(layers=4, hidden=384, heads=12, intermediate=1536),
}


def resolve_shape(student: str | dict | StudentShape) -> StudentShape:
    """A preset name, a dict {"layers", "hidden", "heads", "intermediate"} or a StudentShape."""
    if isinstance(student, StudentShape):
        return student.check()
    if isinstance(student, str):
        if student not in PRESETS:
            raise UserError(f"unknown student preset {student!r}; choose one of: {', '.join(PRESETS)} (or pass a custom shape)")
        return PRESETS[student]
    if isinstance(student, dict):
        missing = {"layers", "hidden", "heads", "intermediate"} - set(student)
        extra = set(student) - {"layers", "hidden", "heads", "intermediate"}
        if missing or extra:
            raise UserError(f"a custom student shape needs exactly the keys layers, hidden, heads, intermediate "
                            f"(missing {sorted(missing)}, unknown {sorted(extra)})")
        return StudentShape(**student).check()
    raise UserError(f"student must be a preset name or a shape dict, got {type(student).__name__}")


def student_config(shape: StudentShape, teacher_config, head: str, labels: tuple[str, ...] = ()):
    """A BERT config of `shape` sharing the teacher's vocabulary, positions and token types, with the task's labels."""
    from transformers import BertConfig

    if shape.heads != teacher_config.num_attention_heads:
        raise UserError(f"the student has {shape.heads} attention heads but the teacher {teacher_config.num_attention_heads}; "
                        "TinyBERT's attention loss needs the same number of heads")
    config = BertConfig(
        vocab_size=teacher_config.vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=teacher_config.max_position_embeddings, type_vocab_size=getattr(teacher_config, "type_vocab_size", 2),
        pad_token_id=teacher_config.pad_token_id, hidden_act="gelu", layer_norm_eps=1e-12)
    if head == "classification":
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    config.architectures = [HEAD_ARCHITECTURES[head]]
    return config


def new_student(config, seed: int):
    """A randomly initialised task model (seeded, so the same seed gives the same weights)."""
    import torch

    torch.manual_seed(seed)
    return model_class(head_of_architecture(config.architectures[0]))(config)


def check_general_source(source: str | Path, shape: StudentShape) -> None:
    """Refuse a general checkpoint whose config is not BERT or does not have the student's shape (config only).

    The original TinyBERT configs carry no `model_type`, so the config file is read as a BERT config directly.
    """
    from transformers import BertConfig

    try:
        values, _ = BertConfig.get_config_dict(str(source))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the general checkpoint config of {source!s}: {str(error).splitlines()[0]}") from None
    if values.get("model_type", "bert") != "bert":
        raise UserError(f"general checkpoint {source} is a {values['model_type']!r} model, not BERT-family")
    config = BertConfig.from_dict(values)
    found = (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size)
    if found != (shape.layers, shape.hidden, shape.heads, shape.intermediate):
        raise UserError(f"general checkpoint {source} has layers/hidden/heads/intermediate {found}, the student "
                        f"{(shape.layers, shape.hidden, shape.heads, shape.intermediate)}; pick the matching --student")


def load_general_encoder(student, source: str | Path) -> dict:
    """Copy the encoder weights of a general checkpoint (folder or hub id, safetensors only) into `student.bert`.

    Returns a short description for the report. Shapes must match the student exactly.
    """
    from transformers import BertModel

    try:
        check_weight_files(source)
        general = BertModel.from_pretrained(str(source), use_safetensors=True, trust_remote_code=False)
    except OSError as error:
        raise UserError(f"cannot load a general checkpoint from {source!s}: {str(error).splitlines()[0]} "
                        "(it needs config.json and safetensors weights; use --init random or general otherwise)") from None
    target = student.bert.state_dict()
    weights = {k: v for k, v in general.state_dict().items() if k in target}
    wrong = [k for k, v in weights.items() if v.shape != target[k].shape]
    missing = [k for k in target if k not in weights and not k.startswith("pooler.")]
    if wrong or missing:
        c = general.config
        raise UserError(f"general checkpoint {source} has shape {c.num_hidden_layers} layers x {c.hidden_size} hidden "
                        f"(vocab {c.vocab_size}), which does not fit the student; pick a matching --student")
    student.bert.load_state_dict(weights, strict=False)
    return {"source": str(source), "tensors": len(weights)}


def teacher_layer_map(shape: StudentShape, teacher_config) -> list[int]:
    """The teacher layers g(0..M) a `teacher-layers` student is cut from, after checking that it fits: at most the
    teacher's width (narrower students keep a subset of its units, distill/narrowing.py) and depth (layer_mapping
    refuses more)."""
    from distill.losses import layer_mapping

    t = teacher_config
    if t.model_type != "bert":
        raise UserError(f"--init {TEACHER_LAYERS} copies BERT layers into the BERT student, and the teacher is a {t.model_type!r} "
                        "model; start the student with --init general")
    if shape.hidden > t.hidden_size or shape.intermediate > t.intermediate_size:
        raise UserError(f"--init {TEACHER_LAYERS} needs a student at most as wide as the teacher (hidden {t.hidden_size}, "
                        f"intermediate {t.intermediate_size}); pass for example --student "
                        f"{min(shape.layers, t.num_hidden_layers)}x{t.hidden_size}x{t.num_attention_heads}x{t.intermediate_size}")
    return layer_mapping(shape.layers, t.num_hidden_layers)


def load_teacher_layers(student, teacher, mapping: list[int], batches: list[dict] = ()) -> tuple[dict, list[int]]:
    """Start the student as the fine-tuned teacher with layers dropped, as DistilBERT does: embeddings, task head and
    pooler as they are, student layer m from teacher layer g(m) (`mapping`, the intermediate loss's own map, so each
    copied layer starts on the target it is distilled towards). A narrower student keeps the teacher's units that
    carry the most signal on `batches` (distill/narrowing.py).

    Returns a description for the report and the teacher hidden dimension each student dimension came from."""
    from distill.narrowing import cut_state_dict, plan_cut

    config = student.config
    cut = plan_cut(teacher, config.hidden_size, config.intermediate_size, [g - 1 for g in mapping[1:]], list(batches))
    weights, target = cut_state_dict(teacher.state_dict(), cut, mapping), student.state_dict()
    for key, tensor in target.items():
        if key not in weights or weights[key].shape != tensor.shape:
            raise UserError(f"the teacher has no weight for the student's {key} {tuple(tensor.shape)}; "
                            f"--init {TEACHER_LAYERS} needs a teacher and student with the same head")
    student.load_state_dict({k: weights[k] for k in target})
    info = {"teacher_layers": mapping[1:], "tensors": len(target)}
    t = teacher.config
    if (config.hidden_size, config.intermediate_size) != (t.hidden_size, t.intermediate_size):
        info.update(narrowed_from={"hidden": t.hidden_size, "intermediate": t.intermediate_size}, probe_batches=len(batches))
    return info, cut.hidden.tolist()
