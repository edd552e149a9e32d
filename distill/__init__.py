"""Distillation stage: a BERT teacher for a task, then a TinyBERT student distilled from it."""
