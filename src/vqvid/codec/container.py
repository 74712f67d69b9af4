"""The .vqv container: a header saying what the codes are and how they were coded, then chunks of coded codes.

Layout of format versions 3 and 4, every integer little-endian:

    offset    bytes  field
    0         8      magic b"VQV\\x00\\r\\n\\x1a\\n" (\\r\\n and \\x1a expose text-mode transfers, as in PNG)
    8         2      format version, u16 (= FORMAT_VERSION)
    10        64     fixed fields, `_FIELDS`: mode u8 (0 fixed, 1 prior), levels u8 (1: top codes only, 2: top and
                     bottom), fingerprint length u8, writer length u8, num_codes u32, frame_count u32,
                     fps numerator u32, fps denominator u32, height u32, width u32, clip_frames u32,
                     top grid (t, h, w) 3 x u32, bottom grid (t, h, w) 3 x u32, num_chunks u32,
                     coding batch u32 (how many clips' distributions the priors computed together, 1 to
                     min(MAX_CODING_BATCH, clips); 1 in mode "fixed")
    74        n      model fingerprint, n printable ASCII bytes (1 <= n <= 255)
    74+n      m      writer: m printable ASCII bytes (0 <= m <= 255) naming the software and CPU that wrote the
                     file (torch version, CPU instruction set, ...), so that a decoder can explain a refusal
    74+n+m    12c    chunk table: for each of the c chunks, payload length u32, CRC32 of the payload u32 and
                     CRC32 of what the payload decodes to u32 (`codes_checksum`: the writer computes it, the
                     decoder checks it; the container only stores it)
    74+n+m+12c  4    header CRC32 (zlib.crc32) of all bytes before it
    78+n+m+12c       the c payloads, back to back, in table order, up to the end of the file

Chunks come in layers: first the top layer, one chunk per clip holding that clip's top codes, then (levels 2)
the bottom layer, one chunk per clip holding its bottom codes. A file that ends exactly where its top layer
ends is therefore still a whole file of top codes: reading it returns the top layer's chunks alone
(`VQVFile.complete` False). A file cut anywhere else is refused, unless the reader asks for the top layer alone
(`read_vqv(..., top_only=True)`) and the cut lies after it.

The format version pins everything a decoder must reproduce bit for bit, including the quantisation of
probabilities in `vqvid.codec.entropy`, and the coding batch: the priors' floats for a clip depend on how many
clips they are computed with (`vqvid.codec.coding`), so the decoder must compute with as many, and the computation
itself: version 4 computes them with the fused stepper, version 3 with the module-by-module one (same layout; the
floats differ in the last bits). Older versions are still read: version 2 is version 3 without the coding batch
field (60 bytes of fixed fields; its files were coded one clip at a time, a coding batch of 1); version 1 also has
no levels, writer or decoded-code checksums, one chunk per clip holding its top then its bottom codes, 8-byte table
entries and 58 bytes of fixed fields.

Reading checks every field before trusting it, and the sizes the file claims against the size it has before
reading any further, so a damaged or hostile file costs at most its own size in memory and always fails with
`VQVFormatError` saying which field or chunk is wrong, what was expected and what was found.
"""

from __future__ import annotations

import math
import operator
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO, Literal, NamedTuple

from vqvid.files import atomic_path

MAGIC = b"VQV\x00\r\n\x1a\n"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)

MODES: tuple[str, ...] = ("fixed", "prior")  # index = value of the mode byte
LEVELS: tuple[str, ...] = ("top", "both")  # index + 1 = value of the levels byte: the layers the file holds
MAX_FINGERPRINT_BYTES = 255  # the length is one byte
MAX_WRITER_BYTES = 255
MAX_NUM_CODES = 1 << 16  # codes are stored as 16-bit integers
MAX_SIDE = 1 << 14  # pixels per frame side; 16K video is 15360 x 8640
MAX_CLIP_FRAMES = 1 << 10
MAX_CLIP_PIXELS = 1 << 28  # frames x height x width of one clip: what a decoder allocates at once
MAX_CODING_BATCH = 64  # clips whose distributions are computed together: a decoder holds that many steppers' caches
_U32_MAX = (1 << 32) - 1

_PREAMBLE = struct.Struct("<8sH")  # magic, version
_FIELDS = struct.Struct("<BBBB7I3I3III")
_FIELDS_V2 = struct.Struct("<BBBB7I3I3II")  # version 2: no coding batch
_CHUNK_ENTRY = struct.Struct("<III")  # payload length, payload CRC32, CRC32 of the decoded content
_FIELDS_V1 = struct.Struct("<BB7I3I3II")  # version 1: no levels, no writer
_CHUNK_ENTRY_V1 = struct.Struct("<II")  # version 1: no content checksum
_CRC = struct.Struct("<I")


class VQVFormatError(ValueError):
    """A .vqv file (or bytes) that is not a valid container; the message names the field or chunk."""


class FingerprintMismatchError(VQVFormatError):
    """A .vqv file coded with another model than the one given to decode it."""


class TopLayerWholeError(VQVFormatError):
    """A .vqv file cut short inside its bottom layer (a copy or download stopped there): its top layer is whole,
    and `read_vqv(..., top_only=True)` reads it."""


def _check_int(name: str, value: object, low: int, high: int) -> int:
    expected = f"header field {name}: expected an integer in [{low}, {high}]"
    if isinstance(value, bool):
        raise ValueError(f"{expected}, found {value!r}")
    try:
        number = operator.index(value)  # ints and numpy integers; not floats
    except TypeError:
        raise ValueError(f"{expected}, found {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{expected}, found {number}")
    return number


def _check_fps(value: object) -> Fraction:
    if isinstance(value, float):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"header field fps: expected a finite number > 0, found {value}")
        # A float frame rate is usually a rounded rational such as 30000/1001; recover it.
        value = Fraction(value).limit_denominator(1_000_000)
    if isinstance(value, bool) or not isinstance(value, (int, Fraction)):
        raise ValueError(f"header field fps: expected a Fraction, int or float, found {value!r}")
    fps = Fraction(value)
    if fps <= 0 or fps.numerator > _U32_MAX or fps.denominator > _U32_MAX:
        raise ValueError(f"header field fps: expected a ratio > 0 of two 32-bit integers, found {fps}")
    return fps


@dataclass(frozen=True)
class VQVHeader:
    """What a .vqv file holds: enough to decode every chunk and to rebuild the video's geometry and timing."""

    fingerprint: str  # hash of the model the codes belong to; decoding with another model gives garbage
    mode: Literal[
        "fixed", "prior"
    ]  # "prior": entropy-coded under the priors; "fixed": ceil(log2 K) bits a code
    num_codes: int  # K, codebook entries per level; codes are in [0, K)
    frame_count: int  # frames of the source video; the last clip may be padded past it
    fps: Fraction  # exact frame rate (30000/1001 stays exact); floats are converted on construction
    height: int  # frame height in pixels
    width: int  # frame width in pixels
    clip_frames: int  # frames per clip: the video is coded as ceil(frame_count / clip_frames) clips
    top_shape: tuple[int, int, int]  # (t, h, w) of the top code grid of one clip
    bottom_shape: tuple[int, int, int]  # (t, h, w) of the bottom code grid of one clip
    num_chunks: int  # payloads that follow the header; must equal len(chunks) when writing
    levels: Literal["top", "both"] = "both"  # the layers of codes the file holds: top only, or top then bottom
    writer: str = ""  # software and CPU that wrote the file, e.g. "torch 2.5.1; cpu AVX2; ..."; "" in version 1
    coding_batch: int = 1  # clips whose PMFs the priors computed together; 1 in mode "fixed" and before version 3
    version: int = FORMAT_VERSION  # the layout the file was read from; files are always written in the newest

    def __post_init__(self) -> None:
        """Validates and normalises every field; raises ValueError naming the field."""
        # Printable ASCII only: `vqvid info` prints these, so a file cannot smuggle in terminal escapes.
        for name, low, high in (("fingerprint", 1, MAX_FINGERPRINT_BYTES), ("writer", 0, MAX_WRITER_BYTES)):
            text = getattr(self, name)
            if not isinstance(text, str) or not (
                text.isascii() and (text.isprintable()) and low <= len(text) <= high
            ):
                raise ValueError(
                    f"header field {name}: expected {low} to {high} printable ASCII characters, found {text!r}"
                )
        if self.mode not in MODES:
            raise ValueError(f"header field mode: expected one of {MODES}, found {self.mode!r}")
        if self.levels not in LEVELS:
            raise ValueError(f"header field levels: expected one of {LEVELS}, found {self.levels!r}")
        if self.version not in READABLE_VERSIONS:
            raise ValueError(f"header field version: expected one of {READABLE_VERSIONS}, found {self.version!r}")
        if self.version == 1 and (self.levels != "both" or self.writer):
            raise ValueError("header fields levels and writer: version 1 files hold both levels and no writer")
        set_ = object.__setattr__  # frozen dataclass: normalise in place once, here
        set_(self, "num_codes", _check_int("num_codes", self.num_codes, 2, MAX_NUM_CODES))
        set_(self, "frame_count", _check_int("frame_count", self.frame_count, 1, _U32_MAX))
        set_(self, "fps", _check_fps(self.fps))
        set_(self, "height", _check_int("height", self.height, 1, MAX_SIDE))
        set_(self, "width", _check_int("width", self.width, 1, MAX_SIDE))
        set_(self, "clip_frames", _check_int("clip_frames", self.clip_frames, 1, MAX_CLIP_FRAMES))
        clip_pixels = self.clip_frames * self.height * self.width
        if clip_pixels > MAX_CLIP_PIXELS:
            raise ValueError(
                f"header fields clip_frames x height x width: expected at most {MAX_CLIP_PIXELS} pixels "
                f"per clip, found {self.clip_frames} x {self.height} x {self.width} = {clip_pixels}"
            )
        clip = (self.clip_frames, self.height, self.width)
        for level in ("top", "bottom"):
            name = f"{level}_shape"
            shape = getattr(self, name)
            try:
                shape = tuple(shape)  # a tuple, list or array
            except TypeError:
                shape = None
            if shape is None or len(shape) != 3:
                raise ValueError(f"header field {name}: expected (t, h, w), found {getattr(self, name)!r}")
            # A code grid is never finer than the clip it codes; this also bounds what a decoder allocates.
            dims = tuple(
                _check_int(f"{name}[{i}]", d, 1, limit)
                for i, (d, limit) in enumerate(zip(shape, clip, strict=True))
            )
            set_(self, name, dims)
        set_(self, "num_chunks", _check_int("num_chunks", self.num_chunks, 1, _U32_MAX))
        # A batch never holds more clips than the file: the writer takes the smaller of its batch and the clips.
        if self.version < 3:
            most, why = 1, "files before format version 3 were coded one clip at a time"
        elif self.mode == "fixed":
            most, why = 1, "mode 'fixed' computes no distributions"
        else:
            most = min(MAX_CODING_BATCH, self.num_clips)
            why = f"at most {MAX_CODING_BATCH} and at most the file's {self.num_clips} clip(s)"
        try:
            set_(self, "coding_batch", _check_int("coding_batch", self.coding_batch, 1, most))
        except ValueError as error:
            raise ValueError(f"{error} ({why})") from None

    @property
    def num_clips(self) -> int:
        return -(-self.frame_count // self.clip_frames)

    @property
    def num_levels(self) -> int:
        """Layers of chunks: 1 (top codes only) or 2 (top, then bottom)."""
        return LEVELS.index(self.levels) + 1

    @property
    def duration(self) -> float:
        """Seconds of video."""
        return float(self.frame_count / self.fps)


class VQVFile(NamedTuple):
    header: VQVHeader
    chunks: list[bytes]  # all header.num_chunks chunks, or only the top layer's if the file ends there
    checks: list[int] | None  # per chunk, the writer's CRC32 of what it decodes to; None in version 1

    @property
    def complete(self) -> bool:
        """False for a file that ends after its top layer (the bottom layer's chunks are missing)."""
        return len(self.chunks) == self.header.num_chunks


def _encode_prefix(header: VQVHeader, chunks: list[bytes], checks: list[int]) -> bytes:
    """Magic, version, fields, fingerprint, writer, chunk table and header CRC."""
    fingerprint = header.fingerprint.encode("ascii")
    writer = header.writer.encode("ascii")
    fields = _FIELDS.pack(
        MODES.index(header.mode),
        LEVELS.index(header.levels) + 1,
        len(fingerprint),
        len(writer),
        header.num_codes,
        header.frame_count,
        header.fps.numerator,
        header.fps.denominator,
        header.height,
        header.width,
        header.clip_frames,
        *header.top_shape,
        *header.bottom_shape,
        header.num_chunks,
        header.coding_batch,
    )
    table = b"".join(
        _CHUNK_ENTRY.pack(len(chunk), zlib.crc32(chunk), check) for chunk, check in zip(chunks, checks, strict=True)
    )
    prefix = _PREAMBLE.pack(MAGIC, FORMAT_VERSION) + fields + fingerprint + writer + table
    return prefix + _CRC.pack(zlib.crc32(prefix))


def write_vqv(
    target: str | os.PathLike | BinaryIO, header: VQVHeader, chunks: list[bytes], checks: list[int]
) -> None:
    """Writes a .vqv file (always the newest format version) with one content checksum per chunk
    (`codes_checksum` of what the chunk decodes to). For a path, the bytes go to a temporary file in the same
    folder that then replaces the target in one step: a crash leaves the old file or the complete new one,
    never a partial one."""
    chunks = [bytes(chunk) for chunk in chunks]
    if len(chunks) != header.num_chunks or len(checks) != header.num_chunks:
        raise ValueError(
            f"write_vqv: header.num_chunks is {header.num_chunks} but {len(chunks)} chunks and {len(checks)} "
            "checksums were given"
        )
    if header.num_chunks % header.num_levels:
        raise ValueError(
            f"write_vqv: {header.num_chunks} chunks do not split into {header.num_levels} layers of equal size"
        )
    if header.version != FORMAT_VERSION:
        raise ValueError(f"write_vqv: files are written in format version {FORMAT_VERSION}, not {header.version}")
    checks = [_check_int("chunk checksum", check, 0, _U32_MAX) for check in checks]
    too_long = [i for i, chunk in enumerate(chunks) if len(chunk) > _U32_MAX]
    if too_long:
        raise ValueError(f"write_vqv: chunk {too_long[0]} is longer than {_U32_MAX} bytes")
    prefix = _encode_prefix(header, chunks, checks)
    if not isinstance(target, (str, os.PathLike)):
        target.write(prefix)
        for chunk in chunks:
            target.write(chunk)
        return
    with atomic_path(target) as partial, open(partial, "wb") as file:  # never a half-written file at `target`
        file.write(prefix)
        for chunk in chunks:
            file.write(chunk)


class _Reader:
    """Bounds-checked reads from a whole file or a bytes object of known size."""

    def __init__(self, name: str, size: int, read_at: Callable[[int, int], bytes]) -> None:
        self.name, self.size, self._read_at = name, size, read_at

    def error(self, message: str, kind: type[VQVFormatError] = VQVFormatError) -> VQVFormatError:
        return kind(f"{self.name}: {message}")

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset + length > self.size:
            raise self.error(
                f"truncated: {what} needs bytes [{offset}, {offset + length}) "
                f"but the file has {self.size} bytes"
            )
        data = self._read_at(offset, length)
        if len(data) != length:  # the file shrank while being read
            raise self.error(f"truncated: {what} needs {length} bytes at offset {offset}, read {len(data)}")
        return data


def _parse(reader: _Reader, top_only: bool = False) -> VQVFile:
    magic = reader.read(0, min(len(MAGIC), reader.size), "magic")
    if magic != MAGIC[: len(magic)]:
        raise reader.error(f"not a .vqv file: expected magic {MAGIC!r}, found {magic!r}")
    _, version = _PREAMBLE.unpack(reader.read(0, _PREAMBLE.size, "magic and format version"))
    if version not in READABLE_VERSIONS:
        raise reader.error(
            f"format version: expected one of {', '.join(map(str, READABLE_VERSIONS))}, found {version}"
            + (" (a newer vqvid wrote it)" if version > FORMAT_VERSION else "")
        )
    offset = _PREAMBLE.size
    if version == 1:
        fields = _FIELDS_V1.unpack(reader.read(offset, _FIELDS_V1.size, "header fields"))
        offset += _FIELDS_V1.size
        mode, fingerprint_length, *numbers = fields
        levels, writer_length, entry = LEVELS.index("both") + 1, 0, _CHUNK_ENTRY_V1
    else:
        layout = _FIELDS if version >= 3 else _FIELDS_V2
        fields = layout.unpack(reader.read(offset, layout.size, "header fields"))
        offset += layout.size
        mode, levels, fingerprint_length, writer_length, *numbers = fields
        entry = _CHUNK_ENTRY
    coding_batch = numbers.pop() if version >= 3 else 1
    num_codes, frame_count, fps_num, fps_den, height, width, clip_frames, *grids, num_chunks = numbers
    top_shape, bottom_shape = grids[:3], grids[3:]
    if fingerprint_length == 0:
        raise reader.error("header field fingerprint length: expected 1 to 255 bytes, found 0")
    fingerprint_bytes = reader.read(offset, fingerprint_length, "fingerprint")
    offset += fingerprint_length
    writer_bytes = reader.read(offset, writer_length, "writer")
    offset += writer_length
    table_size = num_chunks * entry.size
    if offset + table_size + _CRC.size > reader.size:
        raise reader.error(
            f"header field num_chunks: {num_chunks} chunks need a {table_size}-byte table "
            f"at offset {offset}, "
            f"but the file has {reader.size} bytes"
        )
    table = reader.read(offset, table_size, "chunk table")
    offset += table_size
    (stored_crc,) = _CRC.unpack(reader.read(offset, _CRC.size, "header CRC32"))
    computed_crc = zlib.crc32(reader.read(0, offset, "header"))
    if stored_crc != computed_crc:
        raise reader.error(
            f"header CRC32: expected {computed_crc:#010x} (computed), found {stored_crc:#010x}"
        )
    offset += _CRC.size
    if mode >= len(MODES):
        raise reader.error(f"header field mode: expected 0 (fixed) or 1 (prior), found {mode}")
    if not 1 <= levels <= len(LEVELS):
        raise reader.error(f"header field levels: expected 1 (top) or 2 (top and bottom), found {levels}")
    if fps_den == 0:
        raise reader.error("header field fps: expected a denominator >= 1, found 0")
    try:
        header = VQVHeader(
            # Non-ASCII bytes become U+FFFD, which the header's own checks then refuse by name.
            fingerprint=fingerprint_bytes.decode("ascii", errors="replace"),
            mode=MODES[mode],
            num_codes=num_codes,
            frame_count=frame_count,
            fps=Fraction(fps_num, fps_den),
            height=height,
            width=width,
            clip_frames=clip_frames,
            top_shape=top_shape,
            bottom_shape=bottom_shape,
            num_chunks=num_chunks,
            levels=LEVELS[levels - 1],
            writer=writer_bytes.decode("ascii", errors="replace"),
            coding_batch=coding_batch,
            version=version,
        )
    except ValueError as error:
        raise reader.error(str(error)) from None
    if version >= 2 and num_chunks % header.num_levels:
        raise reader.error(
            f"header field num_chunks: expected a multiple of the {header.num_levels} layers, found {num_chunks}"
        )
    entries = list(entry.iter_unpack(table))  # [(length, crc32[, check])] * num_chunks
    remaining = reader.size - offset
    # A file of both levels that ends exactly after its top layer is a whole file of top codes; asked for the
    # top layer alone, one cut anywhere after it (a download stopped in the bottom layer) is read as one.
    top_layer = num_chunks // header.num_levels if version >= 2 and header.levels == "both" else None
    lengths = [length for length, *_ in entries]
    present = len(entries)
    if top_layer is not None and remaining != sum(lengths):
        top_bytes = sum(lengths[:top_layer])
        if remaining == top_bytes or (top_only and top_bytes < remaining < sum(lengths)):
            present = top_layer
            remaining = top_bytes
    declared = 0
    for index, length in enumerate(lengths[:present]):
        declared += length
        if declared > remaining:
            salvage = top_layer is not None and index >= top_layer
            raise reader.error(
                f"chunk {index}: length {length} runs past the end of the file "
                f"(chunks 0..{index} need {declared} bytes, {remaining} follow the header)"
                + ("; its top layer is whole and can be read alone" if salvage else ""),
                TopLayerWholeError if salvage else VQVFormatError,
            )
    if declared != remaining:
        raise reader.error(f"chunk table: chunks take {declared} bytes but {remaining} follow the header")
    chunks = []
    for index, (length, stored, *_) in enumerate(entries[:present]):
        payload = reader.read(offset, length, f"chunk {index}")
        computed = zlib.crc32(payload)
        if computed != stored:
            raise reader.error(
                f"chunk {index}: CRC32 expected {computed:#010x} (computed), found {stored:#010x}"
            )
        chunks.append(payload)
        offset += length
    checks = None if version == 1 else [check for _, _, check in entries[:present]]
    return VQVFile(header, chunks, checks)


def read_vqv(source: str | os.PathLike | bytes | bytearray | memoryview, *, top_only: bool = False) -> VQVFile:
    """Reads and fully validates a .vqv file (a path) or its bytes. Raises VQVFormatError for anything that is
    not a valid container; OSError only for a file that cannot be opened or read.

    top_only: the caller wants the top layer alone, so a file of both levels cut short anywhere in its bottom
    layer is read as a file of its top layer (`VQVFile.complete` False); without it, only a cut exactly after
    the top layer is."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        return _parse(
            _Reader("<bytes>", len(view), lambda offset, length: bytes(view[offset : offset + length])), top_only
        )
    try:
        opened = open(source, "rb")  # noqa: SIM115 (closed by the with statement below)
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(source)}: no such file") from None
    except IsADirectoryError:
        raise VQVFormatError(f"{os.fspath(source)}: a folder, not a .vqv file") from None
    with opened as file:
        size = os.fstat(file.fileno()).st_size

        def read_at(offset: int, length: int) -> bytes:
            file.seek(offset)
            return file.read(length)

        return _parse(_Reader(os.fspath(source), size, read_at), top_only)


def check_fingerprint(header: VQVHeader, expected: str) -> None:
    """Refuses to decode codes with a model other than the one that produced them."""
    if header.fingerprint != expected:
        raise FingerprintMismatchError(
            f"model fingerprint mismatch: the file was coded with model {header.fingerprint!r}, "
            f"but the model given to decode it is {expected!r}"
        )


def describe(file: VQVFile, file_size: int) -> str:
    """A human-readable summary for `vqvid info`. Rates count the whole file, container overhead included."""
    header = file.header
    bits = 8 * file_size
    fps = header.fps
    fps_text = (
        f"{fps.numerator}"
        if fps.denominator == 1
        else f"{fps.numerator}/{fps.denominator} (~{float(fps):.3f})"
    )
    top, bottom = header.top_shape, header.bottom_shape
    clips = header.num_clips
    per_layer = header.num_chunks // header.num_levels  # chunks of one layer: one per clip in vqvid's files
    layers = len(file.chunks) // per_layer if header.version >= 2 else 2
    codes = clips * (math.prod(top) + (math.prod(bottom) if layers == 2 else 0))
    fixed_bits = (header.num_codes - 1).bit_length()
    mode = (
        f"entropy-coded under the priors, {header.coding_batch} clip(s) at a time"
        if header.mode == "prior"
        else f"packed at {fixed_bits} bits per code"
    )
    if header.version == 1:
        levels = "top and bottom, one chunk per clip"
    else:
        layer_bytes = [sum(map(len, file.chunks[i * per_layer : (i + 1) * per_layer])) for i in range(layers)]
        header_bytes = file_size - sum(map(len, file.chunks))
        # The second figure is what `vqvid compress` calls the top layer: what decoding the coarse video reads.
        levels = f"top ({layer_bytes[0]} bytes of codes; {header_bytes + layer_bytes[0]} with the header)"
        if layers == 2:
            levels += f", bottom ({layer_bytes[1]} bytes of codes)"
        elif header.levels == "both":
            levels += "; the file ends after its top layer, the bottom layer is missing"
    rows = [
        ("format", f"version {header.version}"),
        ("fingerprint", header.fingerprint),
        ("writer", header.writer or "not recorded (format version 1)"),
        ("mode", f"{header.mode} ({mode})"),
        ("levels", levels),
        ("codebook", f"{header.num_codes} codes per level"),
        (
            "video",
            f"{header.frame_count} frames of {header.width}x{header.height} at {fps_text} fps, "
            f"{header.duration:.3f} s",
        ),
        ("clips", f"{clips} of {header.clip_frames} frames"),
        ("code grids", f"top {'x'.join(map(str, top))}, bottom {'x'.join(map(str, bottom))} per clip"),
        ("chunks", f"{len(file.chunks)} of {header.num_chunks}" if not file.complete else str(header.num_chunks)),
        ("file size", f"{file_size} bytes"),
        ("bits/pixel", f"{bits / (header.frame_count * header.height * header.width):.4g}"),
        ("kbit/s", f"{bits / header.duration / 1000:.2f}"),
        ("bits/code", f"{bits / codes:.4g} (vs {fixed_bits} packed)"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
