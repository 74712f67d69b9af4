"""Fixed-width packing of code indices, for files written without priors.

Each code in [0, K) takes ceil(log2 K) bits: 9 for the 512-entry codebooks. Codes are laid out in order,
each least significant bit first, in a little-endian bit stream (stream bit n is bit n % 8 of byte n // 8);
the last byte is padded with zero bits.
"""

from __future__ import annotations

import numpy as np

MAX_NUM_CODES = 1 << 16  # codes are stored as 16-bit integers elsewhere; also bounds the bit width to 16


def bits_per_code(num_codes: int) -> int:
    """ceil(log2 num_codes): the fixed width of one code."""
    if not 2 <= num_codes <= MAX_NUM_CODES:
        raise ValueError(f"num_codes: expected an integer in [2, {MAX_NUM_CODES}], got {num_codes}")
    return (num_codes - 1).bit_length()


def packed_size(count: int, num_codes: int) -> int:
    """Bytes taken by `count` packed codes."""
    return (count * bits_per_code(num_codes) + 7) // 8


def pack_fixed(codes: np.ndarray, num_codes: int) -> bytes:
    """Packs integer codes of any shape (flattened in C order), each in [0, num_codes), at fixed width."""
    width = bits_per_code(num_codes)
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"codes: expected integers, got dtype {codes.dtype}")
    codes = codes.reshape(-1).astype(np.int64)  # (N,)
    if codes.size and (codes.min() < 0 or codes.max() >= num_codes):
        raise ValueError(f"codes: expected values in [0, {num_codes}), got [{codes.min()}, {codes.max()}]")
    bits = (codes[:, None] >> np.arange(width)) & 1  # (N, width), least significant bit first
    return np.packbits(bits.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_fixed(data: bytes, count: int, num_codes: int) -> np.ndarray:
    """Inverse of `pack_fixed`: `count` codes, (count,) int64. Refuses data of the wrong length, nonzero
    padding and codes >= num_codes, which can only come from a corrupt or mislabelled payload."""
    width = bits_per_code(num_codes)
    if count < 0:
        raise ValueError(f"count: expected a number of codes >= 0, got {count}")
    expected = packed_size(count, num_codes)
    if len(data) != expected:
        raise ValueError(
            f"packed codes: expected {expected} bytes for {count} codes of {width} bits, got {len(data)}"
        )
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")  # (8 * expected,)
    if bits[count * width :].any():
        raise ValueError("packed codes: expected zero padding bits after the last code")
    codes = bits[: count * width].reshape(count, width).astype(np.int64) @ (1 << np.arange(width))  # (count,)
    if codes.size and codes.max() >= num_codes:
        raise ValueError(f"packed codes: expected values in [0, {num_codes}), found {codes.max()}")
    return codes
