import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqvid.codec.packing import bits_per_code, pack_fixed, packed_size, unpack_fixed

NUM_CODES = [2, 3, 256, 512, 1000]
LENGTHS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 1001]


def reference_pack(codes: list[int], width: int) -> bytes:
    """The documented layout, one bit at a time: code i's bit j is stream bit i * width + j, and stream bit n
    is bit n % 8 of byte n // 8."""
    stream = [(code >> j) & 1 for code in codes for j in range(width)]
    stream += [0] * (-len(stream) % 8)
    return bytes(sum(bit << k for k, bit in enumerate(stream[i : i + 8])) for i in range(0, len(stream), 8))


@pytest.mark.parametrize(
    "num_codes, width", [(2, 1), (3, 2), (4, 2), (5, 3), (256, 8), (257, 9), (512, 9), (1000, 10)]
)
def test_bits_per_code_is_ceil_log2(num_codes, width):
    assert bits_per_code(num_codes) == width


@pytest.mark.parametrize("num_codes", NUM_CODES)
@pytest.mark.parametrize("length", LENGTHS)
def test_round_trip_matches_bit_by_bit_reference(num_codes, length):
    rng = np.random.default_rng(length * 7919 + num_codes)
    codes = rng.integers(0, num_codes, size=length)
    if length >= 2:  # both ends of the range
        codes[:2] = [0, num_codes - 1]
    data = pack_fixed(codes, num_codes)
    width = bits_per_code(num_codes)
    assert len(data) == packed_size(length, num_codes) == -(-length * width // 8)
    assert data == reference_pack(codes.tolist(), width)
    decoded = unpack_fixed(data, length, num_codes)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, codes)


def test_layout_by_hand():
    # K = 512, 9 bits: code 1 sets stream bit 0, code 256 sets stream bit 9 + 8 = 17, i.e. bit 1 of byte 2.
    assert pack_fixed(np.array([1, 256]), 512) == b"\x01\x00\x02"
    # K = 3, 2 bits each, least significant first: codes 2, 1, 0, 2 -> stream bits 01 10 00 01 -> bits 1, 2
    # and 7 of the byte.
    assert pack_fixed(np.array([2, 1, 0, 2]), 3) == bytes([0b10000110])


def test_packs_any_shape_and_integer_dtype_in_c_order():
    codes = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) * 20
    assert pack_fixed(codes, 512) == pack_fixed(codes.reshape(-1).astype(np.int64), 512)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(2, 1 << 16).flatmap(
        lambda k: st.tuples(st.just(k), st.lists(st.integers(0, k - 1), max_size=60))
    )
)
def test_round_trip_any_codebook(case):
    num_codes, codes = case
    codes = np.array(codes, dtype=np.int64)
    np.testing.assert_array_equal(unpack_fixed(pack_fixed(codes, num_codes), len(codes), num_codes), codes)


@pytest.mark.parametrize(
    "codes, num_codes, error, match",
    [
        (np.array([512]), 512, ValueError, r"\[0, 512\)"),
        (np.array([-1]), 512, ValueError, r"\[0, 512\)"),
        (np.array([1.0]), 512, TypeError, "integers"),
        (np.array([0]), 1, ValueError, "num_codes"),
        (np.array([0]), (1 << 16) + 1, ValueError, "num_codes"),
    ],
)
def test_pack_refuses_bad_input(codes, num_codes, error, match):
    with pytest.raises(error, match=match):
        pack_fixed(codes, num_codes)


def test_unpack_refuses_wrong_length():
    data = pack_fixed(np.arange(10), 512)  # 90 bits -> 12 bytes
    with pytest.raises(ValueError, match="expected 12 bytes for 10 codes of 9 bits, got 11"):
        unpack_fixed(data[:-1], 10, 512)
    with pytest.raises(ValueError, match="expected 12 bytes"):
        unpack_fixed(data + b"\x00", 10, 512)


def test_unpack_refuses_nonzero_padding():
    data = bytearray(pack_fixed(np.arange(10), 512))
    data[-1] |= 0x80  # bit 95: past the 90 bits of codes
    with pytest.raises(ValueError, match="padding"):
        unpack_fixed(bytes(data), 10, 512)


def test_unpack_refuses_codes_outside_the_codebook():
    # K = 3 uses 2 bits, so the bit pattern 11 (= 3) is representable but not a code.
    with pytest.raises(ValueError, match=r"\[0, 3\), found 3"):
        unpack_fixed(bytes([0b00000011]), 1, 3)
