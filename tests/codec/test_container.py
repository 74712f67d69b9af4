import hashlib
import io
import os
import struct
import tracemalloc
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqvid.codec import container
from vqvid.codec.container import (
    FORMAT_VERSION,
    FingerprintMismatchError,
    TopLayerWholeError,
    VQVFormatError,
    VQVHeader,
    check_fingerprint,
    describe,
    read_vqv,
    write_vqv,
)
from vqvid.codec.entropy import decode_all, encode_all, quantize_pmf

MAGIC = b"VQV\x00\r\n\x1a\n"
CHUNKS = (b"top codes", b"", b"bottom codes\x00\xff", b"b1")  # the top layer: chunks 0 and 1
CHECKS = (7, 0, 2**32 - 1, 12345)
WRITER = b"torch 9.9; cpu x86_64 AVX512"


def raw_file(
    *,
    magic: bytes = MAGIC,
    version: int = FORMAT_VERSION,
    mode: int = 1,
    levels: int = 2,
    fingerprint: bytes = b"model-3f2a",
    fingerprint_length: int | None = None,
    writer: bytes = WRITER,
    num_codes: int = 512,
    frame_count: int = 20,
    fps: tuple[int, int] = (25, 1),
    height: int = 32,
    width: int = 48,
    clip_frames: int = 8,
    top: tuple[int, int, int] = (2, 4, 6),
    bottom: tuple[int, int, int] = (4, 8, 12),
    num_chunks: int | None = None,
    chunks: tuple[bytes, ...] = CHUNKS,
    checks: tuple[int, ...] = CHECKS,
    lengths: tuple[int, ...] | None = None,
    coding_batch: int = 2,
) -> bytes:
    """A .vqv file built from the layout in the container's docstring, field by field, with valid CRCs.
    version=2 builds the layout of format version 2 (no coding batch), version=1 that of format version 1 (no
    levels, writer or content checksums either)."""
    fingerprint_length = len(fingerprint) if fingerprint_length is None else fingerprint_length
    batch: tuple[int, ...] = (coding_batch,)
    if version == 1:
        layout, counts, entry, batch = "<BB7I3I3II", (mode, fingerprint_length), "<II", ()
        writer = b""
    elif version == 2:
        layout, counts, entry, batch = "<BBBB7I3I3II", (mode, levels, fingerprint_length, len(writer)), "<III", ()
    else:
        layout, counts, entry = "<BBBB7I3I3III", (mode, levels, fingerprint_length, len(writer)), "<III"
    fields = struct.pack(
        layout,
        *counts,
        num_codes,
        frame_count,
        *fps,
        height,
        width,
        clip_frames,
        *top,
        *bottom,
        len(chunks) if num_chunks is None else num_chunks,
        *batch,
    )
    lengths = tuple(map(len, chunks)) if lengths is None else lengths
    table = b"".join(
        struct.pack(entry, n, zlib.crc32(c), *(() if version == 1 else (check,)))
        for n, c, check in zip(lengths, chunks, checks, strict=True)
    )
    prefix = struct.pack("<8sH", magic, version) + fields + fingerprint + writer + table
    return prefix + struct.pack("<I", zlib.crc32(prefix)) + b"".join(chunks)


HEADER = VQVHeader(
    fingerprint="model-3f2a",
    mode="prior",
    num_codes=512,
    frame_count=20,
    fps=Fraction(25),
    height=32,
    width=48,
    clip_frames=8,
    top_shape=(2, 4, 6),
    bottom_shape=(4, 8, 12),
    num_chunks=4,
    writer=WRITER.decode(),
    coding_batch=2,
)
VALID = raw_file()
TOP_LAYER_END = len(VALID) - len(CHUNKS[2]) - len(CHUNKS[3])  # the file cut after its top layer


def write(target, header=HEADER, chunks=CHUNKS, checks=CHECKS):
    write_vqv(target, header, list(chunks), list(checks))


def test_writer_follows_the_documented_layout():
    buffer = io.BytesIO()
    write(buffer)
    assert buffer.getvalue() == VALID


def test_round_trip_bytes_path_and_file(tmp_path):
    header, chunks, checks = read_vqv(VALID)
    assert header == HEADER and chunks == list(CHUNKS) and checks == list(CHECKS)
    assert read_vqv(VALID).complete
    path = tmp_path / "clip.vqv"
    write(path)
    assert path.read_bytes() == VALID
    assert read_vqv(path) == (HEADER, list(CHUNKS), list(CHECKS))
    assert read_vqv(str(path)).header == HEADER
    assert read_vqv(bytearray(VALID)).chunks == list(CHUNKS)
    assert read_vqv(memoryview(VALID)).chunks == list(CHUNKS)


def test_round_trip_fixed_mode_and_exact_rational_fps():
    header = VQVHeader(
        fingerprint="f" * 255,
        mode="fixed",
        num_codes=65536,
        frame_count=2**32 - 1,
        fps=Fraction(30000, 1001),
        height=1,
        width=16384,
        clip_frames=1,
        top_shape=[1, 1, 2048],
        bottom_shape=np.array([1, 1, 4096]),
        num_chunks=1,
        levels="top",
        writer="w" * 255,
    )
    assert header.top_shape == (1, 1, 2048) and header.bottom_shape == (1, 1, 4096)
    buffer = io.BytesIO()
    write_vqv(buffer, header, [bytes(range(256))], [3])
    assert read_vqv(buffer.getvalue()) == (header, [bytes(range(256))], [3])


def test_write_replaces_the_target_in_one_step(tmp_path, monkeypatch):
    path = tmp_path / "clip.vqv"
    path.write_bytes(b"old contents")

    def failing_fsync(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(container.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        write(path)
    assert path.read_bytes() == b"old contents"  # the target was never touched
    assert sorted(os.listdir(tmp_path)) == ["clip.vqv"]  # and the temporary file is gone
    monkeypatch.undo()
    write(path)
    assert path.read_bytes() == VALID
    assert sorted(os.listdir(tmp_path)) == ["clip.vqv"]


def test_write_refuses_a_chunk_count_other_than_the_header_says(tmp_path):
    with pytest.raises(ValueError, match="num_chunks is 4 but 2 chunks and 2 checksums"):
        write(tmp_path / "clip.vqv", chunks=CHUNKS[:2], checks=CHECKS[:2])
    with pytest.raises(ValueError, match="num_chunks is 4 but 4 chunks and 3 checksums"):
        write(tmp_path / "clip.vqv", checks=CHECKS[:3])
    odd = VQVHeader(**{**fields_of(HEADER), "num_chunks": 3})
    with pytest.raises(ValueError, match="3 chunks do not split into 2 layers"):
        write(tmp_path / "clip.vqv", odd, CHUNKS[:3], CHECKS[:3])
    with pytest.raises(ValueError, match="written in format version 4, not 3"):
        write(tmp_path / "clip.vqv", VQVHeader(**{**fields_of(HEADER), "version": 3}))
    assert not (tmp_path / "clip.vqv").exists()


def fields_of(header: VQVHeader) -> dict:
    return {name: getattr(header, name) for name in header.__dataclass_fields__}


def test_version_3_files_are_still_read():
    # Version 3 has version 4's layout; only the stepper its PMFs came from differs (vqvid.codec.coding)
    old = raw_file(version=3)
    assert old[:8] + old[10:-4 - sum(map(len, CHUNKS))] == VALID[:8] + VALID[10:-4 - sum(map(len, CHUNKS))]
    file = read_vqv(old)
    assert file.header == VQVHeader(**{**fields_of(HEADER), "version": 3})
    assert file.chunks == list(CHUNKS) and file.checks == list(CHECKS)
    assert "format       version 3" in describe(file, len(old))


def test_version_2_files_are_still_read():
    old = raw_file(version=2)
    assert len(old) == len(VALID) - 4  # no coding batch field
    file = read_vqv(old)
    assert file.header == VQVHeader(**{**fields_of(HEADER), "version": 2, "coding_batch": 1})
    assert file.chunks == list(CHUNKS) and file.checks == list(CHECKS)
    cut = read_vqv(old[:TOP_LAYER_END - 4])
    assert cut.chunks == list(CHUNKS[:2]) and not cut.complete
    assert "format       version 2" in describe(file, len(old))
    assert "mode         prior (entropy-coded under the priors, 1 clip(s) at a time)" in describe(file, len(old))
    assert "prior (entropy-coded under the priors, 2 clip(s) at a time)" in describe(read_vqv(VALID), len(VALID))
    with pytest.raises(ValueError, match=r"coding_batch: .*found 2 \(files before format version 3 were coded one "
                                         "clip at a time"):
        VQVHeader(**{**fields_of(HEADER), "version": 2})


def test_version_1_files_are_still_read():
    old = raw_file(version=1, chunks=CHUNKS[:3], checks=CHECKS[:3])
    file = read_vqv(old)
    assert file.header == VQVHeader(**{**fields_of(HEADER), "num_chunks": 3, "writer": "", "version": 1,
                                       "coding_batch": 1})
    assert file.chunks == list(CHUNKS[:3]) and file.checks is None and file.complete
    for size in range(len(old)):  # version 1 has no layers: every cut is refused
        with pytest.raises(VQVFormatError):
            read_vqv(old[:size])


def test_a_file_cut_after_its_top_layer_holds_the_top_layer():
    file = read_vqv(VALID[:TOP_LAYER_END])
    assert file.header == HEADER and file.chunks == list(CHUNKS[:2]) and file.checks == list(CHECKS[:2])
    assert not file.complete
    text = describe(file, TOP_LAYER_END)
    assert "chunks       2 of 4" in text and "the bottom layer is missing" in text


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(magic=b"VQV\x00\n\n\x1a\n"), "not a .vqv file: expected magic"),
        (dict(magic=b"RIFF\x00\x00\x00\x00"), "not a .vqv file"),
        (dict(version=0), "format version: expected one of 1, 2, 3, 4, found 0$"),
        (dict(version=5), r"format version: expected one of 1, 2, 3, 4, found 5 \(a newer vqvid wrote it\)"),
        (dict(coding_batch=0), r"coding_batch: expected an integer in \[1, 3\], found 0 \(at most 64 and at most "
                               r"the file's 3 clip\(s\)\)"),
        (dict(coding_batch=4), r"coding_batch: expected an integer in \[1, 3\], found 4"),
        (dict(coding_batch=65, frame_count=8 * 100), r"coding_batch: expected an integer in \[1, 64\], found 65"),
        (dict(coding_batch=2, mode=0), r"coding_batch: .*found 2 \(mode 'fixed' computes no distributions\)"),
        (dict(mode=2), "mode: expected 0 .fixed. or 1 .prior., found 2"),
        (dict(levels=0), r"levels: expected 1 \(top\) or 2 \(top and bottom\), found 0"),
        (dict(levels=3), r"levels: expected 1 \(top\) or 2 \(top and bottom\), found 3"),
        (dict(chunks=CHUNKS[:3], checks=CHECKS[:3]), "num_chunks: expected a multiple of the 2 layers"),
        (dict(writer=b"torch\x1b[2J"), "writer: expected 0 to 255 printable ASCII"),
        (dict(fingerprint=b"", fingerprint_length=0), "fingerprint length: expected 1 to 255 bytes, found 0"),
        (dict(fingerprint=b"\x1b[2Jgotcha"), "fingerprint: expected 1 to 255 printable ASCII"),
        (dict(fingerprint=b"mod\xc3\xa8le"), "fingerprint: expected 1 to 255 printable ASCII"),
        (dict(num_codes=0), r"num_codes: expected an integer in \[2, 65536\], found 0"),
        (dict(num_codes=1), r"num_codes: expected an integer in \[2, 65536\], found 1"),
        (dict(num_codes=65537), r"num_codes: expected an integer in \[2, 65536\], found 65537"),
        (dict(frame_count=0), r"frame_count: expected an integer in \[1, 4294967295\], found 0"),
        (dict(fps=(0, 1)), "fps: expected a ratio > 0 of two 32-bit integers, found 0"),
        (dict(fps=(25, 0)), "fps: expected a denominator >= 1, found 0"),
        (dict(height=0), r"height: expected an integer in \[1, 16384\], found 0"),
        (dict(height=16385), r"height: expected an integer in \[1, 16384\], found 16385"),
        (dict(width=0), r"width: expected an integer in \[1, 16384\], found 0"),
        (dict(width=2**32 - 1), r"width: expected an integer in \[1, 16384\], found 4294967295"),
        (dict(clip_frames=0), r"clip_frames: expected an integer in \[1, 1024\], found 0"),
        (dict(clip_frames=1025), r"clip_frames: expected an integer in \[1, 1024\], found 1025"),
        (dict(clip_frames=1024, height=16384, width=16384), "at most 268435456 pixels per clip"),
        (dict(top=(0, 4, 6)), r"top_shape\[0\]: expected an integer in \[1, 8\], found 0"),
        (dict(top=(9, 4, 6)), r"top_shape\[0\]: expected an integer in \[1, 8\], found 9"),
        (dict(top=(2, 33, 6)), r"top_shape\[1\]: expected an integer in \[1, 32\], found 33"),
        (dict(bottom=(4, 8, 0)), r"bottom_shape\[2\]: expected an integer in \[1, 48\], found 0"),
        (dict(bottom=(4, 8, 49)), r"bottom_shape\[2\]: expected an integer in \[1, 48\], found 49"),
        (dict(num_chunks=0, chunks=(), checks=()), r"num_chunks: expected an integer in \[1, 4294967295\]"),
        (dict(lengths=(9, 0, 14, 1)), "chunk table: chunks take 24 bytes but 25 follow the header"),
        (dict(lengths=(9, 1, 14, 1)), "chunk 1: CRC32 expected"),
        (dict(lengths=(9, 0, 2**32 - 1, 2)), "chunk 2: length 4294967295 runs past the end of the file"),
    ],
)
def test_every_field_is_validated(overrides, match):
    with pytest.raises(VQVFormatError, match=match):
        read_vqv(raw_file(**overrides))


def test_trailing_bytes_are_refused():
    with pytest.raises(VQVFormatError, match="chunks take 25 bytes but 26 follow the header"):
        read_vqv(VALID + b"\x00")


def test_header_and_chunk_crcs_are_checked():
    header_end = len(VALID) - sum(map(len, CHUNKS))
    damaged = bytearray(VALID)
    damaged[30] ^= 0x01  # height 32 -> 33: still a valid value, so only the CRC can tell
    with pytest.raises(VQVFormatError, match="header CRC32: expected 0x[0-9a-f]{8} .computed., found"):
        read_vqv(bytes(damaged))
    damaged = bytearray(VALID)
    damaged[header_end + 3] ^= 0x40  # inside chunk 0
    with pytest.raises(VQVFormatError, match="chunk 0: CRC32 expected"):
        read_vqv(bytes(damaged))
    damaged = bytearray(VALID)
    damaged[-3] ^= 0x80  # inside chunk 2; chunk 1 is empty
    with pytest.raises(VQVFormatError, match="chunk 2: CRC32"):
        read_vqv(bytes(damaged))


def test_truncation_at_every_offset_but_the_end_of_the_top_layer_is_refused():
    for size in range(len(VALID)):
        if size == TOP_LAYER_END:
            continue
        with pytest.raises(VQVFormatError):
            read_vqv(VALID[:size])


def test_asked_for_the_top_layer_alone_a_file_cut_anywhere_after_it_holds_the_top_layer():
    for size in range(TOP_LAYER_END, len(VALID)):
        file = read_vqv(VALID[:size], top_only=True)
        assert file.header == HEADER and file.chunks == list(CHUNKS[:2]) and file.checks == list(CHECKS[:2])
        assert not file.complete
    assert read_vqv(VALID, top_only=True).complete  # a whole file stays whole
    for size in range(TOP_LAYER_END):  # a cut inside the header or the top layer is still refused
        with pytest.raises(VQVFormatError):
            read_vqv(VALID[:size], top_only=True)
    damaged = bytearray(VALID)
    damaged[TOP_LAYER_END - 1] ^= 0x01  # the top layer's last byte: its CRC still guards it
    with pytest.raises(VQVFormatError, match="chunk 0: CRC32"):
        read_vqv(bytes(damaged[:-2]), top_only=True)


def test_a_cut_in_the_bottom_layer_says_the_top_layer_can_be_read():
    with pytest.raises(VQVFormatError, match="its top layer is whole and can be read alone$") as cut:
        read_vqv(VALID[:-2])
    assert isinstance(cut.value, TopLayerWholeError)  # what the commands' `--levels top` hint follows
    # cut in the top layer: nothing to salvage
    with pytest.raises(VQVFormatError, match=r"follow the header\)$") as early:
        read_vqv(VALID[:TOP_LAYER_END - 1])
    assert not isinstance(early.value, TopLayerWholeError)


def test_truncated_file_on_disk_names_the_file(tmp_path):
    path = tmp_path / "cut.vqv"
    path.write_bytes(VALID[:50])
    with pytest.raises(VQVFormatError, match=f"{path}: truncated: header fields"):
        read_vqv(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_any_damage_is_detected(edits):
    damaged = bytearray(VALID)
    for offset, value in edits:
        damaged[offset] = value
    if bytes(damaged) == VALID:
        assert read_vqv(bytes(damaged)) == (HEADER, list(CHUNKS), list(CHECKS))
    else:  # every byte is under a CRC, so any change is refused
        with pytest.raises(VQVFormatError):
            read_vqv(bytes(damaged))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_the_magic_raise_only_format_errors(tail):
    with pytest.raises(VQVFormatError):
        read_vqv(MAGIC + b"\x01\x00" + tail)
    with pytest.raises(VQVFormatError):
        read_vqv(MAGIC + b"\x02\x00" + tail)
    with pytest.raises(VQVFormatError):
        read_vqv(MAGIC + b"\x03\x00" + tail)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(lengths=(9, 0, 2**32 - 1, 2)), "chunk 2: length 4294967295 runs past the end"),
        (dict(num_chunks=2**32 - 1), "num_chunks: 4294967295 chunks need a 51539607540-byte table"),
    ],
)
def test_huge_claimed_sizes_are_refused_before_allocating(overrides, match):
    data = raw_file(**overrides)
    tracemalloc.start()
    try:
        with pytest.raises(VQVFormatError, match=match):
            read_vqv(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_fingerprint_mismatch_names_both():
    check_fingerprint(HEADER, "model-3f2a")
    with pytest.raises(FingerprintMismatchError, match="'model-3f2a'.*'model-0000'"):
        check_fingerprint(HEADER, "model-0000")
    assert issubclass(FingerprintMismatchError, VQVFormatError) and issubclass(VQVFormatError, ValueError)


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("mode", "lossless", "mode: expected one of"),
        ("fingerprint", "", "fingerprint"),
        ("fingerprint", "x" * 256, "fingerprint"),
        ("fingerprint", "tab\there", "fingerprint"),
        ("writer", "x" * 256, "writer"),
        ("levels", "bottom", "levels: expected one of"),
        ("version", 5, "version: expected one of"),
        ("coding_batch", 2.0, "coding_batch: expected an integer"),
        ("coding_batch", 4, r"coding_batch: expected an integer in \[1, 3\], found 4 \(at most 64 and at most "
                            r"the file's 3 clip\(s\)\)"),
        ("num_codes", 512.0, r"num_codes: expected an integer in \[2, 65536\], found 512.0"),
        ("num_codes", True, "num_codes"),
        ("fps", 0.0, "fps: expected a finite number > 0"),
        ("fps", float("nan"), "fps: expected a finite number > 0"),
        ("fps", float("inf"), "fps: expected a finite number > 0"),
        ("fps", -25, "fps: expected a ratio > 0"),
        ("fps", "25", "fps: expected a Fraction, int or float"),
        ("top_shape", (2, 4), r"top_shape: expected \(t, h, w\)"),
    ],
)
def test_header_construction_validates_fields(field, value, match):
    fields = fields_of(HEADER)
    with pytest.raises(ValueError, match=match):
        VQVHeader(**{**fields, field: value})


def test_header_normalises_numbers():
    fields = fields_of(HEADER)
    header = VQVHeader(**{**fields, "fps": 30000 / 1001, "num_codes": np.int64(512)})
    assert header.fps == Fraction(30000, 1001) and type(header.num_codes) is int
    assert VQVHeader(**{**fields, "fps": 29.97}).fps == Fraction(2997, 100)


def test_describe_by_hand():
    header = VQVHeader(
        fingerprint="abc",
        mode="fixed",
        num_codes=512,
        frame_count=10,
        fps=5,
        height=16,
        width=16,
        clip_frames=4,
        top_shape=(1, 2, 2),
        bottom_shape=(2, 4, 4),
        num_chunks=6,
    )
    text = describe(container.VQVFile(header, [b""] * 6, [0] * 6), 1000)
    # 8000 bits over 10 frames of 256 pixels; over 2 s; over 3 clips of 4 + 32 codes.
    assert "bits/pixel   3.125\n" in text
    assert "kbit/s       4.00\n" in text
    assert "bits/code    74.07 (vs 9 packed)" in text
    assert "clips        3 of 4 frames" in text
    assert "fixed (packed at 9 bits per code)" in text
    assert "levels       top (0 bytes of codes; 1000 with the header), bottom (0 bytes of codes)" in text
    assert "format       version 4" in text


# Bytes of a whole format version 4 file: layout, chunk table and range-coded payloads. A change here means
# existing files no longer read or decode: bump FORMAT_VERSION together with it. The version 3 file of the same
# content differs only in its version field and header CRC.
GOLDEN_V4_FILE_SHA256 = "9a8e59432c2cf92a99a0209d4adc8bcb65eebb5c67ced4219e65e97369daa9e1"
GOLDEN_V3_FILE_SHA256 = "f935d827c4678393de4c78e3928574268ba7704dd03834d08ac417ed2ed0d9a1"
GOLDEN_FILE_BYTES = 327


def test_a_version_4_file_is_pinned_and_a_version_3_file_has_its_layout():
    """Three clips of top (1, 2, 4) and bottom (2, 4, 8) codes in coding batches of 2, coded under PMFs from
    integer arithmetic (log-probabilities on the 1/16-nat grid), so the bytes are the same on every CPU: what
    the file writes around the priors' PMFs, which the video codec's tests check on this CPU."""
    def pmfs_and_codes(n: int, salt: int) -> tuple[np.ndarray, np.ndarray]:
        i, k = np.arange(n)[:, None], np.arange(16)[None, :]
        steps = -((i * 7 + k * 13 + salt) * (k + 3) % 97)  # (n, 16) grid steps, up to 6 nats below
        pmfs = quantize_pmf((steps / 16).astype(np.float32))
        return pmfs, (np.arange(n) * 5 + salt) % 16

    header = VQVHeader(fingerprint="golden-v3", mode="prior", num_codes=16, frame_count=10, fps=Fraction(10),
                       height=16, width=32, clip_frames=4, top_shape=(1, 2, 4), bottom_shape=(2, 4, 8),
                       num_chunks=6, writer="vqvid golden", coding_batch=2)
    coded = [pmfs_and_codes(8 if index < 3 else 64, index) for index in range(6)]
    chunks = [encode_all(codes, pmfs) for pmfs, codes in coded]
    checks = [zlib.crc32(codes.astype("<u2").tobytes()) for _, codes in coded]
    buffer = io.BytesIO()
    write_vqv(buffer, header, chunks, checks)
    data = buffer.getvalue()
    assert (hashlib.sha256(data).hexdigest(), len(data)) == (GOLDEN_V4_FILE_SHA256, GOLDEN_FILE_BYTES)
    prefix_end = len(data) - sum(map(len, chunks)) - 4  # where the header CRC starts
    prefix = data[:8] + (3).to_bytes(2, "little") + data[10:prefix_end]
    as_v3 = prefix + zlib.crc32(prefix).to_bytes(4, "little") + data[prefix_end + 4:]
    assert hashlib.sha256(as_v3).hexdigest() == GOLDEN_V3_FILE_SHA256
    assert read_vqv(as_v3).header == VQVHeader(**{**fields_of(header), "version": 3})
    file = read_vqv(data)
    assert file.header == header and file.checks == checks
    for chunk, (pmfs, codes) in zip(file.chunks, coded, strict=True):
        np.testing.assert_array_equal(decode_all(chunk, pmfs), codes)


def test_a_missing_path_or_a_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'none.vqv'}: no such file$"):
        read_vqv(tmp_path / "none.vqv")
    with pytest.raises(VQVFormatError, match=f"^{tmp_path}: a folder, not a .vqv file$"):
        read_vqv(tmp_path)
