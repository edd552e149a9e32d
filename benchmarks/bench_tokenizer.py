"""On-device tokenizer speed and fidelity: time per text of mobile_app.runtime.tokenizer vs HF BertTokenizerFast.

    python benchmarks/bench_tokenizer.py [--data-dir ../shared/data] [--limit N]

For every text of SST-2 (train + dev), UCI SMS spam (all), SQuAD questions and contexts (all of dev), it
encodes with our pure-Python tokenizer (a fresh one per dataset, so its word cache starts cold) and with
HF's Rust tokenizer called once per text (as an app would) and batched, and counts texts whose ids or
offsets differ. Prints a table; the mismatch column must be 0.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def dataset_texts(data_dir) -> dict[str, list[str]]:
    from distill.tasks import get_task

    sst2, spam, qa = (get_task(name).load(data_dir) for name in ("sentiment", "spam", "qa"))
    squad = qa["train"] + qa["eval"]
    return {
        "SST-2 train+dev": [e["text"] for e in sst2["train"] + sst2["eval"]],
        "SMS spam (all)": [e["text"] for split in spam.values() for e in split],
        "SQuAD questions": [e["question"] for e in squad],
        "SQuAD contexts": sorted({e["context"] for e in squad}),
    }


def per_text_us(encode, texts) -> tuple[float, float]:
    """(mean, p99) microseconds per text of calling encode(text) once per text."""
    times = []
    for text in texts:
        start = time.perf_counter()
        encode(text)
        times.append((time.perf_counter() - start) * 1e6)
    times.sort()
    return statistics.fmean(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("TINYBERT_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data")))
    parser.add_argument("--limit", type=int, default=None, help="at most N texts per dataset (default: all)")
    args = parser.parse_args(argv)

    from transformers import BertTokenizerFast

    from mobile_app.runtime.tokenizer import WordPieceTokenizer
    from tests.tiny_models import teacher_base_dir

    vocab = teacher_base_dir() / "vocab.txt"
    hf = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    rows = []
    for name, texts in tqdm(dataset_texts(args.data_dir).items(), desc="datasets", unit="set"):
        texts = texts[:args.limit]
        ours = WordPieceTokenizer.from_vocab(vocab)
        ours_mean, ours_p99 = per_text_us(ours.encode, texts)
        hf_mean, hf_p99 = per_text_us(lambda t: hf(t, return_offsets_mapping=True), texts)
        start = time.perf_counter()
        refs = hf.backend_tokenizer.encode_batch(texts)
        batch_us = (time.perf_counter() - start) * 1e6 / len(texts)
        mismatches = sum(1 for text, ref in zip(texts, refs)
                         if (enc := ours.encode(text)).input_ids != ref.ids or enc.offsets != [tuple(o) for o in ref.offsets])
        tokens = statistics.fmean(len(r.ids) for r in refs)
        rows.append((name, len(texts), tokens, ours_mean, ours_p99, hf_mean, hf_p99, batch_us, mismatches))

    header = ("dataset", "texts", "tokens/text", "ours us/text", "ours p99", "HF fast us/text", "HF p99", "HF batch us/text", "mismatches")
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for name, n, tokens, om, op, hm, hp, hb, bad in rows:
        print(f"| {name} | {n:,} | {tokens:.1f} | {om:.1f} | {op:.1f} | {hm:.1f} | {hp:.1f} | {hb:.1f} | {bad} |")
    total_bad = sum(r[-1] for r in rows)
    print(f"\n{sum(r[1] for r in rows):,} texts, {total_bad} with different ids or offsets than HF BertTokenizerFast.")
    return 1 if total_bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
