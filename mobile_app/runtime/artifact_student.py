"""Which student a .tflite file was converted from, read from the file itself (standard library only).

The exporter writes the student's sha256 into the model's flatbuffer metadata (`Model.metadata`, name
STUDENT_STAMP_KEY). A file swapped in from another bundle, with its sha256 updated in bundle.json, still carries its
own student's stamp, so opening it against this bundle's `student_sha256` is refused. This reads only the few
tables on the way to that entry (TFLite schema: Model field 4 buffers, 6 metadata; Metadata 0 name, 1 buffer;
Buffer 0 data), not the weights.
"""
from __future__ import annotations

import struct

from mobile_app.runtime.contract import STUDENT_STAMP_KEY

_MODEL_BUFFERS, _MODEL_METADATA = 4, 6


def _u32(data, pos: int) -> int:
    return struct.unpack_from("<I", data, pos)[0]


def _field(data, table: int, index: int) -> int | None:
    """Absolute position of a table's field, or None when absent."""
    vtable = table - struct.unpack_from("<i", data, table)[0]
    size = struct.unpack_from("<H", data, vtable)[0]
    slot = 4 + 2 * index
    if slot >= size:
        return None
    offset = struct.unpack_from("<H", data, vtable + slot)[0]
    return table + offset if offset else None


def _vector(data, table: int, index: int) -> tuple[int, int]:
    """(first element position, length) of a vector field; (0, 0) when absent."""
    pos = _field(data, table, index)
    if pos is None:
        return 0, 0
    start = pos + _u32(data, pos)
    return start + 4, _u32(data, start)


def _table_at(data, element: int) -> int:
    return element + _u32(data, element)


def read_student_stamp(data: bytes | memoryview) -> str | None:
    """The student sha256 stamped into a .tflite's bytes, or None when it carries none. Malformed bytes raise ValueError."""
    try:
        model = _u32(data, 0)
        metadata, count = _vector(data, model, _MODEL_METADATA)
        for i in range(count):
            entry = _table_at(data, metadata + 4 * i)
            name_start, name_length = _vector(data, entry, 0)
            if bytes(data[name_start:name_start + name_length]) != STUDENT_STAMP_KEY.encode():
                continue
            buffer_pos = _field(data, entry, 1)
            buffer_index = _u32(data, buffer_pos) if buffer_pos is not None else 0
            buffers, buffer_count = _vector(data, model, _MODEL_BUFFERS)
            if buffer_index >= buffer_count:
                raise ValueError("its student stamp points past the buffers")
            start, length = _vector(data, _table_at(data, buffers + 4 * buffer_index), 0)
            return bytes(data[start:start + length]).decode("ascii")
    except (struct.error, UnicodeDecodeError) as error:
        raise ValueError(f"not a readable TFLite flatbuffer ({error})") from None
    return None
