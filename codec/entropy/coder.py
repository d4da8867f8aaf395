"""Range coding of integer symbols with per-symbol table rows, escapes, and exact size estimation.

Order in the stream: symbols grouped by table row (row 0 first, raster order inside a row), so each
group is coded with one fixed model in a single constriction call; then the escape payloads in raster
order (bit length on 6 bits, then the zigzag value in 16-bit chunks). The decoder knows every symbol's
row before decoding (from z and the map for y; the channel for z), so it can rebuild the groups.
"""
from __future__ import annotations

import numpy as np

from ..errors import BitlensError
from .tables import PREC_BITS, FreqTable

ESC_LEN_SYMBOLS = 64   # escape payload: bit length coded uniformly over 0..63
ESC_MAX_BITS = 48      # longer payloads only come from corrupted data
CHUNK_BITS = 16


class CorruptStream(BitlensError):
    """The coded data cannot be what an encoder produced."""


def _split(values: np.ndarray, rows: np.ndarray, table: FreqTable) -> tuple[np.ndarray, np.ndarray]:
    """Entry index of every symbol within its row (escape entry for out-of-range), and escape mask."""
    idx = values - table.offset[rows]
    esc = table.length[rows] - 1
    is_esc = (idx < 0) | (idx >= esc)
    return np.where(is_esc, esc, idx), is_esc


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def _bit_length(u: np.ndarray) -> np.ndarray:
    return np.where(u > 0, np.frexp(u.astype(np.float64))[1], 0).astype(np.int64)


def _groups(rows: np.ndarray, n_rows: int) -> list[tuple[int, np.ndarray]]:
    # stable order by row; on 16-bit keys numpy sorts by radix, 10x faster than on int64
    order = np.argsort(rows.astype(np.int16) if n_rows < 1 << 15 else rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(n_rows + 1))
    return [(j, order[bounds[j]:bounds[j + 1]]) for j in range(n_rows) if bounds[j + 1] > bounds[j]]


def symbol_bits(values: np.ndarray, rows: np.ndarray, table: FreqTable) -> np.ndarray:
    """Ideal code length in bits of every symbol (escape payloads included), shaped like `values`."""
    shape = values.shape
    values, rows = values.ravel().astype(np.int64), rows.ravel().astype(np.int64)
    sym, is_esc = _split(values, rows, table)
    bits = PREC_BITS - np.log2(table.freq[table.start[rows] + sym].astype(np.float64))
    if is_esc.any():
        nb = _bit_length(_zigzag(values[is_esc]))
        bits[is_esc] += 6 + CHUNK_BITS * -(-nb // CHUNK_BITS)
    return bits.reshape(shape)


def coded_bits(values: np.ndarray, rows: np.ndarray, table: FreqTable) -> float:
    """Ideal code length in bits of `values`: the real coder's length to within a word."""
    return float(symbol_bits(values, rows, table).sum())


def estimate_bytes(bits: float) -> int:
    """Bytes the range coder emits for a stream of `bits` ideal bits (32-bit words, sealed)."""
    return 4 * (int(bits) // 32 + 1) if bits > 0 else 0


def encode(values: np.ndarray, rows: np.ndarray, table: FreqTable) -> bytes:
    """Range-code `values` (any shape) whose models are `rows` (same shape) of `table`."""
    import constriction

    values, rows = values.ravel().astype(np.int64), rows.ravel().astype(np.int64)
    if values.size == 0:
        return b""
    enc = constriction.stream.queue.RangeEncoder()
    sym, is_esc = _split(values, rows, table)
    for j, pos in _groups(rows, table.rows):
        enc.encode(sym[pos].astype(np.int32), table.model(j))
    if is_esc.any():
        u = _zigzag(values[is_esc])
        nb = _bit_length(u)
        if nb.max() > ESC_MAX_BITS:
            raise ValueError("latent value out of the codable range")
        enc.encode(nb.astype(np.int32), constriction.stream.model.Uniform(ESC_LEN_SYMBOLS))
        chunks = [(int(ui) >> (CHUNK_BITS * c)) & 0xFFFF
                  for ui, n in zip(u, nb) for c in range(-(-int(n) // CHUNK_BITS))]
        if chunks:
            enc.encode(np.array(chunks, dtype=np.int32), constriction.stream.model.Uniform(1 << CHUNK_BITS))
    return enc.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, rows: np.ndarray, table: FreqTable) -> np.ndarray:
    """Inverse of `encode`: values with the shape of `rows`. Raises CorruptStream on impossible data."""
    import constriction

    shape = rows.shape
    rows = rows.ravel().astype(np.int64)
    if rows.size == 0:
        return np.zeros(shape, dtype=np.int64)
    if len(data) % 4 or not data:
        raise CorruptStream("stream length is not a whole number of 32-bit words")
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    sym = np.empty(rows.size, dtype=np.int64)
    try:
        for j, pos in _groups(rows, table.rows):
            sym[pos] = dec.decode(table.model(j), len(pos))
        values = sym + table.offset[rows]
        is_esc = sym == table.length[rows] - 1
        n_esc = int(is_esc.sum())
        if n_esc:
            nb = dec.decode(constriction.stream.model.Uniform(ESC_LEN_SYMBOLS), n_esc).astype(np.int64)
            if nb.max() > ESC_MAX_BITS:
                raise CorruptStream("escape code longer than any encoder writes")
            n_chunks = -(-nb // CHUNK_BITS)
            chunks = dec.decode(constriction.stream.model.Uniform(1 << CHUNK_BITS), int(n_chunks.sum()))
            chunks = chunks.astype(np.int64)
            u = np.zeros(n_esc, dtype=np.int64)
            first = np.concatenate([[0], np.cumsum(n_chunks)[:-1]])
            for c in range(int(n_chunks.max(initial=0))):
                has = n_chunks > c
                u[has] |= chunks[first[has] + c] << (CHUNK_BITS * c)
            values[is_esc] = np.where(u & 1, -(u >> 1) - 1, u >> 1)
    except CorruptStream:
        raise
    except Exception as exc:  # constriction reports exhausted or invalid data as various errors
        raise CorruptStream(f"range decoder failed: {exc}") from None
    return values.reshape(shape)
