"""Compression of code grids into .vqv files: the container, the range coder and fixed-width packing here;
the coding path (`coding`), clip cutting (`clips`) and the video API (`video`) in their modules.

The container, coder and packing know nothing about the priors: distributions come in as arrays, one row per
coded position.
"""

from vqvid.codec.coding import DesyncError
from vqvid.codec.container import (
    FingerprintMismatchError,
    TopLayerWholeError,
    VQVFile,
    VQVFormatError,
    VQVHeader,
    check_fingerprint,
    describe,
    read_vqv,
    write_vqv,
)
from vqvid.codec.entropy import (
    SequentialDecoder,
    SequentialEncoder,
    decode_all,
    encode_all,
    information_content,
    quantize_pmf,
)
from vqvid.codec.packing import bits_per_code, pack_fixed, packed_size, unpack_fixed

__all__ = [
    "DesyncError",
    "FingerprintMismatchError",
    "SequentialDecoder",
    "SequentialEncoder",
    "TopLayerWholeError",
    "VQVFile",
    "VQVFormatError",
    "VQVHeader",
    "bits_per_code",
    "check_fingerprint",
    "decode_all",
    "describe",
    "encode_all",
    "information_content",
    "pack_fixed",
    "packed_size",
    "quantize_pmf",
    "read_vqv",
    "unpack_fixed",
    "write_vqv",
]
