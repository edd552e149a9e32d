"""The word lookup of the `int8-words4` precision: a 4-bit word table, two codes per byte, unpacked by plain ops.

TFLite's own 4-bit lookup (EMBEDDING_LOOKUP v4, INT4 tables) needs TFLite 2.18, and tflite-runtime 2.14 refuses it
("Type not currently supported"). This lookup is spelled with ops every interpreter of the verify matrix has
(TFLite 2.8 included): an int8 EMBEDDING_LOOKUP of the packed rows (a plain copy), a float EMBEDDING_LOOKUP of the
row scales, then CAST, FLOOR, MUL, SUB and CONCATENATION over the looked-up rows only. The table must already be on
the grid of distill/word_grid.py (a student distilled with `--set student_word_bits=4`), so the file stores exactly
the table the PyTorch student computes with.
"""
from __future__ import annotations

import torch
from torch import nn

from distill.word_grid import CENTER, LEVELS, grid_codes, grid_error, on_grid, pack
from mobile_app.runtime.contract import PACKED_WORDS_PRECISIONS

SCALE_TABLE_NAME = "word_scales"
# litert-torch names each op's output after the module that made it; the quantizer leaves this module's ops alone,
# so the row scales stay float32 (quantizing them would add 12 bytes of records per row for 4 bytes of data).
MODULE_SCOPE_REGEX = r"PackedWordTable"


def grid_gaps(table: torch.Tensor, requested) -> dict[str, str]:
    """{precision: why not} for the requested precisions that need the table on the grid when it is not (TFLite and
    Core ML leave them out in one line, or refuse when nothing else was asked for)."""
    wanted = [p for p in requested if p in PACKED_WORDS_PRECISIONS]
    if not wanted or on_grid(table):
        return {}
    reason = ("the student's word table is not on the 4-bit grid (distil it with --set student_word_bits=4); "
              f"rounding it here would change its answers (off by {grid_error(table):.2f} of a step)")
    return dict.fromkeys(wanted, reason)


class PackedWordTable(nn.Module):
    """ids -> float rows of a grid table stored as int8 [rows, dim/2] codes and float32 [rows, 1] scales."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        codes, scales = grid_codes(table)
        self.register_buffer("packed", pack(codes))
        self.register_buffer(SCALE_TABLE_NAME, scales.reshape(-1, 1).contiguous())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        byte = nn.functional.embedding(ids, self.packed).to(torch.float32) + 128.0
        high = torch.floor(byte * (1.0 / LEVELS))
        low = byte - high * LEVELS
        codes = torch.cat([high, low], dim=-1)
        return (codes - CENTER) * nn.functional.embedding(ids, getattr(self, SCALE_TABLE_NAME))
