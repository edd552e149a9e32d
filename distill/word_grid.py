"""The 4-bit word-table grid: every row of the word table as 16 evenly spaced levels around zero times one scale.

The word table is most of a small student's bytes (30,522 rows), and a lookup reads one row per token. Rounding a
trained float table to 4 bits after the fact loses too many answers (benchmarks/RESULTS.md, "The int4 word table").
So a student can be distilled with its table on this grid from the start (`--set student_word_bits=4`: snapped when
the student starts, then kept fixed) and the rest of the network learns around it; export then stores that table
exactly, two codes per byte (the `int8-words4` precision, export/packed_words.py), and its parity is that of its
int8 encoder alone. Row r holds scale[r] * (code - 7.5) with code in 0..15 (a mid-rise grid: no zero level, so
all 16 codes are used symmetrically; a zero row has scale 0).
"""
from __future__ import annotations

import torch

WORD_BITS = (4,)          # the grids a student_word_bits setting may name (None: a float table)
LEVELS = 16
CENTER = (LEVELS - 1) / 2
# A table is on the grid when snapping it again moves no weight by more than this fraction of its row's step
# (float32 rounding of scale * (code - 7.5) stays near 1e-7 of a step).
ON_GRID_TOLERANCE = 1e-3


def grid_codes(table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes int32 [rows, dim] in 0..15, scales float32 [rows]) of the nearest grid point of each row."""
    table = table.detach().to(torch.float32)
    scales = table.abs().amax(dim=1) / CENTER
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.clamp(torch.round(table / safe[:, None] + CENTER), 0, LEVELS - 1).to(torch.int32)
    return codes, scales


def from_codes(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The float table the grid codes stand for."""
    return (codes.to(torch.float32) - CENTER) * scales[:, None]


def snap(table: torch.Tensor) -> torch.Tensor:
    """`table` moved to its nearest grid point, row by row."""
    return from_codes(*grid_codes(table))


def grid_error(table: torch.Tensor) -> float:
    """How far `table` is from the grid: the largest move snapping would make, in steps of the row's scale."""
    codes, scales = grid_codes(table)
    moved = (table.detach().to(torch.float32) - from_codes(codes, scales)).abs()
    step = torch.where(scales > 0, scales, torch.ones_like(scales))
    return float((moved / step[:, None]).max()) if moved.numel() else 0.0


def on_grid(table: torch.Tensor) -> bool:
    return grid_error(table) <= ON_GRID_TOLERANCE


def pack(codes: torch.Tensor) -> torch.Tensor:
    """Two codes per int8 byte: byte j of a row holds code j (high nibble) and code j + dim/2 (low nibble), less 128
    so that it fits int8 (TFLite's converter takes no uint8 constants). Unpacked by export/packed_words.py."""
    rows, dim = codes.shape
    if dim % 2:
        raise ValueError(f"a packed word table needs an even width, got {dim}")
    half = dim // 2
    return (codes[:, :half] * LEVELS + codes[:, half:] - 128).to(torch.int8)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """The int32 codes of a packed table (the inverse of `pack`), for tests and checks."""
    values = packed.to(torch.int32) + 128
    return torch.cat([values // LEVELS, values % LEVELS], dim=1)
