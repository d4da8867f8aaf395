"""Bitstream format v4: a small header, the optional map and loop-filter blocks, the z and y
streams, a CRC-32.

    magic "BLNS" | version u8 | flags u8 | model id u8 | quality code u16 LE
    | width varint | height varint | [map length varint | map bytes]
    | [filter length varint | filter bytes] | z length varint | z bytes | y length varint | y bytes
    | CRC-32 LE of all preceding bytes

flags: bit 0 = grayscale source, bit 1 = a step-offset map follows, bit 2 = a loop-filter block
follows (`codec/loopfilter.py`; versions 2 to 4). Version 2's block has one filter per plane,
version 3's a layout byte and then one filter per luma class (and per chroma plane, in the largest
layout), version 4's the same with each plane's clip index in the first byte's upper six bits (non-
linear filters). Version 1 is version 2 without the filter; a file without a filter block is written as
version 1. Everything is validated before anything is allocated, so damaged or foreign files fail
with one clear sentence.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import BitlensError

MAGIC = b"BLNS"
VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
FLAG_GRAY, FLAG_MAP, FLAG_FILTER = 1, 2, 4
MAX_SIDE = 32768
MAX_PIXELS = 1 << 26  # 64 Mpixel: beyond this a header is treated as corrupt rather than allocated


class BitstreamError(BitlensError):
    """The bytes are not a decodable Bitlens bitstream."""


@dataclass
class Bitstream:
    width: int
    height: int
    model_id: int
    q_code: int
    grayscale: bool
    map_data: bytes | None
    z_data: bytes
    y_data: bytes
    filter_data: bytes | None = None
    version: int = VERSION

    @property
    def planes(self) -> int:
        """Planes the image has: 1 for a grayscale source, else 3 (Y', Cb, Cr)."""
        return 1 if self.grayscale else 3

    def header_bytes(self) -> int:
        """Bytes of everything that is not a z or y stream (header, map, lengths, checksum)."""
        return len(self.pack()) - len(self.z_data) - len(self.y_data)

    def pack(self) -> bytes:
        flags = ((FLAG_GRAY if self.grayscale else 0) | (FLAG_MAP if self.map_data is not None else 0)
                 | (FLAG_FILTER if self.filter_data is not None else 0))
        out = bytearray(MAGIC)
        # version 1 when there is nothing versions 2 to 4 added, so older Bitlens read those files too
        version = self.version if self.filter_data is not None else 1
        out += bytes([version, flags, self.model_id]) + self.q_code.to_bytes(2, "little")
        out += varint(self.width) + varint(self.height)
        optional = [part for part in (self.map_data, self.filter_data) if part is not None]
        for part in optional + [self.z_data, self.y_data]:
            out += varint(len(part)) + part
        out += zlib.crc32(out).to_bytes(4, "little")
        return bytes(out)

    @classmethod
    def unpack(cls, data: bytes) -> "Bitstream":
        if len(data) == 0:
            raise BitstreamError("empty file, not a Bitlens bitstream")
        if data[:4] != MAGIC:
            raise BitstreamError("not a Bitlens bitstream (wrong magic bytes)")
        r = _Reader(data)
        r.take(4)
        version, flags, model_id = r.take(3)
        if version not in READABLE_VERSIONS:
            raise BitstreamError(f"unsupported bitstream version {version} (this Bitlens reads versions "
                                 f"{', '.join(map(str, READABLE_VERSIONS))})")
        known = FLAG_GRAY | FLAG_MAP | (FLAG_FILTER if version >= 2 else 0)
        if flags & ~known:
            raise BitstreamError(f"unknown header flags 0x{flags:02x}: corrupted bitstream")
        q_code = int.from_bytes(r.take(2), "little")
        width, height = r.varint(), r.varint()
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_PIXELS):
            raise BitstreamError(f"header announces an impossible image size {width}x{height}: corrupted bitstream")
        map_data = r.block() if flags & FLAG_MAP else None
        filter_data = r.block() if flags & FLAG_FILTER else None
        z_data, y_data = r.block(), r.block()
        body = r.pos
        if len(data) < body + 4:
            raise BitstreamError(f"truncated bitstream: {len(data)} bytes, header announces {body + 4}")
        if len(data) > body + 4:
            raise BitstreamError(f"{len(data) - body - 4} unexpected bytes after the end of the bitstream")
        if zlib.crc32(data[:body]) != int.from_bytes(data[body:body + 4], "little"):
            raise BitstreamError("checksum mismatch: the bitstream is corrupted")
        return cls(width, height, model_id, q_code, bool(flags & FLAG_GRAY), map_data, z_data, y_data,
                   filter_data, version)


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def split_streams(data: bytes, parts: int = 2) -> list[bytes]:
    """The parts of a y stream written as varint(len) + part for every part but the last, then the
    last (context models: the anchors, channel group by group with slices, then the rest)."""
    r = _Reader(data)
    try:
        out = [r.block() for _ in range(parts - 1)]
    except BitstreamError:
        raise BitstreamError("corrupted bitstream: the y stream's inner length field is malformed "
                             "or longer than the stream") from None
    return out + [data[r.pos:]]


def join_streams(parts: list[bytes]) -> bytes:
    """The inverse of `split_streams`."""
    return b"".join(varint(len(p)) + p for p in parts[:-1]) + parts[-1]


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated bitstream: ends inside the header at byte {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        n = shift = 0
        for _ in range(5):
            b = self.take(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
        raise BitstreamError("malformed length field: corrupted bitstream")

    def block(self) -> bytes:
        n = self.varint()
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated bitstream: {len(self.data)} bytes, a stream needs {self.pos + n}")
        return self.take(n)
