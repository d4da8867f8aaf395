import numpy as np
import pytest

from codec.engine import decode_bitstream
from codec.entropy.bitstream import Bitstream, BitstreamError, varint
from codec.errors import BitlensError
from codec.images import source_from_array
from codec.model.quality import QMAX


@pytest.fixture(scope="module")
def stream(codec):
    from .conftest import sample_crop
    src = source_from_array(sample_crop(40, 56))
    grid = (4, 4)
    kmap = np.zeros(grid, dtype=int)
    kmap[1:3, 1:3] = -2
    return codec.encode(codec.analyze(src), QMAX // 2, kmap).data


def test_header_round_trip(stream):
    bs = Bitstream.unpack(stream)
    assert (bs.width, bs.height, bs.q_code, bs.grayscale) == (56, 40, QMAX // 2, False)
    assert bs.map_data is not None and bs.pack() == stream


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"JFIF\x00\x01" + bytes(40), "wrong magic"),
    (b"BLNS\x05\x00\x01" + bytes(40), "unsupported bitstream version 5"),
])
def test_foreign_files(data, message):
    with pytest.raises(BitstreamError, match=message):
        decode_bitstream(data)


def test_absurd_size_is_rejected_before_allocating():
    head = b"BLNS" + bytes([1, 0, 1]) + (100).to_bytes(2, "little") + varint(30000) + varint(30000)
    with pytest.raises(BitstreamError, match="impossible image size"):
        Bitstream.unpack(head + bytes(20))


def test_unknown_model_names_the_model(stream):
    bs = Bitstream.unpack(stream)
    bs.model_id = 77
    with pytest.raises(BitlensError, match="model id 77"):
        decode_bitstream(bs.pack())


def test_every_truncation_is_a_clear_error(stream):
    for n in range(len(stream)):
        with pytest.raises(BitstreamError):
            decode_bitstream(stream[:n])
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        decode_bitstream(stream + b"\x00")


@pytest.mark.parametrize("y_data", [b"\xff" * 6, b"\x10abc", b""])
def test_context_model_y_stream_with_a_damaged_inner_length(stream, y_data):
    # a checksum-valid file whose y stream cannot be split into the checkerboard's two halves
    bs = Bitstream.unpack(stream)
    bs.y_data = y_data
    with pytest.raises(BitstreamError, match="y stream's inner length"):
        decode_bitstream(bs.pack())


def test_fuzz_mutated_bitstreams_never_escape_as_other_errors(stream):
    rng = np.random.default_rng(1234)
    outcomes = {"ok": 0, "error": 0}
    for i in range(300):
        data = bytearray(stream)
        kind = i % 3
        if kind == 0:        # flip random bits
            for _ in range(rng.integers(1, 4)):
                pos = rng.integers(len(data))
                data[pos] ^= 1 << rng.integers(8)
        elif kind == 1:      # overwrite a run with random bytes
            pos = rng.integers(len(data))
            data[pos:pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        else:                # corrupt the body and fix the checksum, so the decoder itself is tested
            bs = Bitstream.unpack(stream)
            y = bytearray(bs.y_data)
            if y:
                y[rng.integers(len(y))] ^= 0xFF
            bs.y_data = bytes(y[: len(y) - 4 * int(rng.integers(0, 2))])
            data = bytearray(bs.pack())
        try:
            dec = decode_bitstream(bytes(data))
            assert dec.pixels.shape == (40, 56, 3)
            outcomes["ok"] += 1
        except BitlensError:
            outcomes["error"] += 1
    assert outcomes["error"] > 100
