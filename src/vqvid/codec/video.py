"""Video to .vqv files and back: the VQ-VAE's codes, entropy-coded under the PixelSNAIL priors.

    compress(model, video, fps)      video 3×N×H×W in [-1, 1]  -> Compressed (.data: the file; .write(path))
    decompress(model, file)          .vqv path or bytes        -> Decompressed (header, codes, video)
    compress_codes / decompress_codes                             the same, from and to codes

A video of N frames is cut into consecutive clips of the model's clip length L; the last clip is padded by
repeating its last frame, and the header's frame count trims the padding off again. Each clip gives one chunk
of top codes and one of bottom codes (`vqvid.codec.coding` says what a chunk holds and how it is computed);
the file holds every clip's top chunk before any bottom chunk. So a file can be decoded at two qualities:
`levels="top"` decodes the top codes alone (the coarse video, from a fraction of the bits), and a file written
with `levels="top"`, or cut after its top layer, still decodes to that coarse video.

The header records the model folder's fingerprint and the stack that wrote the file; a file is decoded only
with the folder that wrote it, and a chunk whose decoded codes fail their checksum raises `DesyncError` naming
the chunk and both stacks instead of returning wrong codes. Encoding, coding and decoding never depend on the
caller's batch size or thread count (`vqvid.codec.coding`, "Exactness"); `batch_size` only groups the VQ-VAE
decoder's passes (whose floats may differ in the last bits between batch sizes) and the verification passes.
`verify=True` measures how robust the PMFs are: it compares, position by position, the stepper's quantised
PMFs with those of the batched full forward pass of each prior, a different float computation of the same
distributions, and reports the fraction that agree. Coding always uses the stepper.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from io import BytesIO
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from vqvid.codec.coding import (
    CodingPriors,
    codes_checksum,
    coding_priors,
    coding_vqvae,
    decode_clip_v1,
    decode_level,
    encode_clip,
    encode_level,
    pack_level,
    unpack_clip_v1,
    unpack_level,
    writer_description,
)
from vqvid.codec.container import VQVFormatError, VQVHeader, check_fingerprint, read_vqv, write_vqv
from vqvid.codec.entropy import quantize_pmf
from vqvid.codec.packing import bits_per_code, packed_size
from vqvid.models.vqvae import SPACE_FACTOR, TIME_FACTOR, VQVAE, Codes
from vqvid.persistence import ModelFolder

Shape3 = tuple[int, int, int]
Mode = Literal["fixed", "prior"]
Levels = Literal["top", "both"]
Progress = Callable[[int, int], None]  # called with (chunks done, chunks in all) after each chunk


class DesyncError(VQVFormatError):
    """A chunk whose decoded codes are not the ones the encoder coded: the decoder's priors gave other PMFs."""


class ClipGeometry(NamedTuple):
    """What a model folder codes: clips of clip_frames × height × width pixels, and their code grids."""

    clip_frames: int  # L
    height: int
    width: int
    top_shape: Shape3  # (L/4, H/8, W/8)
    bottom_shape: Shape3  # (L/2, H/4, W/4)
    num_codes: int  # K of both levels

    @property
    def positions(self) -> int:
        """Codes of one clip, both levels."""
        return math.prod(self.top_shape) + math.prod(self.bottom_shape)


class Verification(NamedTuple):
    """How often the batched full forward pass of a prior gives the very PMF the stepper gave the coder."""

    matching: int  # positions whose quantised PMFs are equal, all coded levels
    positions: int  # positions compared

    @property
    def fraction(self) -> float:
        return self.matching / self.positions if self.positions else 1.0


@dataclass(frozen=True)
class Compressed:
    """A coded video: the container's header and chunks, and what was coded."""

    header: VQVHeader
    chunks: list[bytes]  # the top chunk of every clip, then (levels "both") the bottom chunk of every clip
    checks: list[int]  # codes_checksum of each chunk's codes
    # top (C, L/4, H/8, W/8), bottom (C, L/2, H/4, W/4) int64 on the CPU, for C clips; bottom None with
    # levels "top"
    codes: Codes
    # sum of -log2 p(code) under each prior, from its float log-probabilities: the rate the model promises.
    # Mode "fixed": codes × bits_per_code, what packing costs. 0 for a level not coded.
    top_bits: float
    bottom_bits: float
    verification: Verification | None  # with verify=True in mode "prior"

    @cached_property
    def data(self) -> bytes:
        """The whole .vqv file."""
        buffer = BytesIO()
        write_vqv(buffer, self.header, self.chunks, self.checks)
        return buffer.getvalue()

    def write(self, path: str | os.PathLike) -> Path:
        """Writes the file atomically (a crash leaves the old file or the whole new one); returns the path."""
        write_vqv(path, self.header, self.chunks, self.checks)
        return Path(path)

    @property
    def size(self) -> int:
        """Bytes of the whole file, container included: what every rate below counts."""
        return len(self.data)

    @property
    def top_layer_size(self) -> int:
        """Bytes of the file cut after its top layer: the header and the top chunks, what decoding the coarse
        video needs."""
        return self.size - sum(map(len, self.chunks[self.header.num_clips:]))

    @property
    def bits_per_pixel(self) -> float:
        header = self.header
        return 8 * self.size / (header.frame_count * header.height * header.width)

    @property
    def kbit_per_second(self) -> float:
        return 8 * self.size / self.header.duration / 1000

    @property
    def fixed_width_size(self) -> int:
        """Bytes of the same codes in a mode "fixed" file: the container plus ceil(log2 K) bits a code."""
        header = self.header
        shapes = [header.top_shape, header.bottom_shape][:header.num_levels]
        payload = header.num_clips * sum(packed_size(math.prod(shape), header.num_codes) for shape in shapes)
        return self.size - sum(map(len, self.chunks)) + payload


class CodedVideo(NamedTuple):
    header: VQVHeader
    codes: Codes  # top (C, L/4, H/8, W/8), bottom (C, L/2, H/4, W/4) int64 on the CPU; bottom None if not decoded
    levels: Levels  # the levels decoded


class Decompressed(NamedTuple):
    header: VQVHeader
    codes: Codes  # as in CodedVideo
    video: Tensor  # (3, N, H, W) float32 in [-1, 1] on the CPU, N = header.frame_count
    levels: Levels  # "top": the coarse video decoded from the top codes alone


def clip_geometry(model: ModelFolder) -> ClipGeometry:
    """The clip size and code grids of a model folder: from the VQ-VAE's clip spec (`data.frames`,
    `data.size`), else from the top prior's grid. Raises ValueError if the priors do not fit that clip."""
    data = model.vqvae.data
    if data.get("frames") and data.get("size"):
        frames, height, width = int(data["frames"]), int(data["size"]), int(data["size"])
    elif model.top is not None:
        t, h, w = model.top.config.shape
        frames, height, width = TIME_FACTOR * t, SPACE_FACTOR * h, SPACE_FACTOR * w
    else:
        raise ValueError(f"model folder {model.fingerprint}: the VQ-VAE records no clip size (data.frames "
                         "and data.size in model.json) and there is no top prior to take it from")
    grids = VQVAE.grid_shapes(frames, height, width)
    geometry = ClipGeometry(frames, height, width, grids.top, grids.bottom, model.vqvae.config.num_codes)
    expected = {"top": (grids.top, None), "bottom": (grids.bottom, grids.top)}
    for level, prior in (("top", model.top), ("bottom", model.bottom)):
        if prior is None:
            continue
        shape, condition = expected[level]
        config = prior.config
        found = (config.shape, config.condition_shape, config.num_codes, config.condition_num_codes)
        wanted = (shape, condition, geometry.num_codes, geometry.num_codes if condition else None)
        if found != wanted:
            raise ValueError(
                f"model folder {model.fingerprint}: the {level} prior models grids {config.shape} of "
                f"{config.num_codes} codes (condition {config.condition_shape}), but clips of "
                f"{frames}×{height}×{width} give {level} grids {shape} of {geometry.num_codes} codes"
                + (f" given top grids {condition}" if condition else "")
            )
    return geometry


def compress(model: ModelFolder, video: Tensor | Iterable[Tensor], fps: float | Fraction, *,
             mode: Mode | None = None, levels: Levels = "both", verify: bool = False, batch_size: int = 4,
             progress: Progress | None = None) -> Compressed:
    """Encodes a video with the folder's VQ-VAE and codes the codes into a .vqv file (module docstring).

    video: frames 3×N×H×W in [-1, 1] at the model's size, or clips B×3×T×H×W played one after another, or an
    iterable of such tensors (consecutive pieces of one video, read as they come). fps: the frame rate the
    header records. mode: "prior" (the default when the folder has both priors) or "fixed". levels: "both",
    or "top" for a file of the top codes alone. Each clip is encoded alone (`vqvid.codec.coding.encode_clip`),
    on the VQ-VAE's device. batch_size: clips per verification pass; the file does not depend on it. verify:
    also compare the stepper's PMFs with the batched full forward pass (`Compressed.verification`).
    """
    geometry = clip_geometry(model)
    _check_batch_size(batch_size)
    _check_levels(levels)
    _choose_mode(model, mode, levels)
    _check_fps(fps)
    vqvae = coding_vqvae(model.vqvae.model)
    tops, bottoms, frame_count = [], [], 0
    for clip, frames in _clips(video, geometry):
        codes = encode_clip(vqvae, clip)
        tops.append(codes.top)
        bottoms.append(codes.bottom)
        frame_count += frames
    if not frame_count:
        raise ValueError("video: expected at least one frame, got none")
    codes = Codes(top=torch.cat(tops), bottom=torch.cat(bottoms))
    return compress_codes(model, codes, frame_count, fps, mode=mode, levels=levels, verify=verify,
                          batch_size=batch_size, progress=progress)


def compress_codes(model: ModelFolder, codes: Codes, frame_count: int, fps: float | Fraction, *,
                   mode: Mode | None = None, levels: Levels = "both", verify: bool = False, batch_size: int = 4,
                   progress: Progress | None = None) -> Compressed:
    """Codes the codes of C consecutive clips, top (C, L/4, H/8, W/8) and bottom (C, L/2, H/4, W/4) integers,
    of a video of `frame_count` frames (more than (C - 1) L, at most C L) into a .vqv file. With levels "top"
    the bottom codes may be None; they are not coded."""
    geometry = clip_geometry(model)
    _check_batch_size(batch_size)
    _check_levels(levels)
    mode = _choose_mode(model, mode, levels)
    top, bottom = _check_codes(codes, geometry, levels)
    num_clips = top.shape[0]
    length = geometry.clip_frames
    if not (num_clips - 1) * length < frame_count <= num_clips * length:
        raise ValueError(f"frame_count: {num_clips} clips of {length} frames hold "
                         f"{(num_clips - 1) * length + 1} to {num_clips * length} frames, got {frame_count}")
    if not model.fingerprint:
        raise ValueError("model folder: model.json has no fingerprint; write the folder again with "
                         "`vqvid export`")
    layers = [top] if bottom is None else [top, bottom]
    header = VQVHeader(fingerprint=model.fingerprint, mode=mode, num_codes=geometry.num_codes,
                       frame_count=frame_count, fps=fps, height=geometry.height, width=geometry.width,
                       clip_frames=geometry.clip_frames, top_shape=geometry.top_shape,
                       bottom_shape=geometry.bottom_shape, num_chunks=len(layers) * num_clips, levels=levels,
                       writer=writer_description())
    checks = [codes_checksum(level_codes[i]) for level_codes in layers for i in range(num_clips)]
    total = header.num_chunks
    chunks, bits = [], [0.0, 0.0]
    if mode == "fixed":
        for level, level_codes in enumerate(layers):
            for i in range(num_clips):
                chunks.append(pack_level(level_codes[i], geometry.num_codes))
                if progress is not None:
                    progress(len(chunks), total)
            bits[level] = float(bits_per_code(geometry.num_codes) * level_codes.numel())
        return Compressed(header, chunks, checks, Codes(top, bottom), *bits, None)

    priors = coding_priors(model.top.model, model.bottom.model if bottom is not None else None)
    pmfs: list[list[np.ndarray]] = [[], []]  # per level, per clip (n, K), with verify
    for level, (prior, level_codes) in enumerate(zip(priors[:len(layers)], layers, strict=True)):
        for i in range(num_clips):
            condition = None if level == 0 else top[i:i + 1]
            coded = encode_level(prior, level_codes[i], condition, keep_pmfs=verify)
            chunks.append(coded.data)
            bits[level] += coded.bits
            if verify:
                pmfs[level].append(coded.pmfs)
            if progress is not None:
                progress(len(chunks), total)
    verification = None
    if verify:
        matching = sum(_verify(priors, top[start:start + batch_size],
                               None if bottom is None else bottom[start:start + batch_size],
                               [level_pmfs[start:start + batch_size] for level_pmfs in pmfs])
                       for start in range(0, num_clips, batch_size))
        verification = Verification(matching, sum(level_codes.numel() for level_codes in layers))
    return Compressed(header, chunks, checks, Codes(top, bottom), *bits, verification)


def decompress_codes(model: ModelFolder, source: str | os.PathLike | bytes, *, levels: Levels | None = None,
                     progress: Progress | None = None) -> CodedVideo:
    """The codes of a .vqv file (a path or its bytes) written with this model folder.

    levels: "top" decodes the top codes alone; "both" needs a file that holds both; None (the default) decodes
    what the file holds: both levels, or the top codes of a file written with levels "top" or cut after its
    top layer.
    Raises `VQVFormatError` for a file that is damaged, truncated, made with another model
    (`FingerprintMismatchError`), does not fit the model, or whose decoded codes fail their checksums
    (`DesyncError`); OSError for a file that cannot be read.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    if levels is not None:
        _check_levels(levels)
    file = read_vqv(source)
    header = file.header
    check_fingerprint(header, model.fingerprint)
    geometry = clip_geometry(model)
    _check_header(header, geometry, name)
    held: Levels = "both" if file.complete and header.levels == "both" else "top"
    if levels == "both" and held == "top":
        raise VQVFormatError(f"{name}: holds only top codes ("
                             + ("written with levels 'top'" if header.levels == "top" else
                                "the file ends after its top layer")
                             + "); decode it with levels 'top'")
    levels = levels or held
    if header.mode == "prior":
        missing = [level for level in ("top", "bottom")[:1 if levels == "top" else 2]
                   if getattr(model, level) is None]
        if missing:
            raise ValueError(f"{name}: coded under the priors, but the model folder has no "
                             f"{' and no '.join(missing)} prior")
        priors = coding_priors(model.top.model, model.bottom.model if levels == "both" else None)
    else:
        priors = None
    if header.version == 1:
        top, bottom = _decode_v1(file.chunks, header, priors, levels, name, progress)
    else:
        top, bottom = _decode_layers(file.chunks, file.checks, header, priors, levels, name, progress)
    return CodedVideo(header, Codes(top=top, bottom=bottom), levels)


def decompress(model: ModelFolder, source: str | os.PathLike | bytes, *, levels: Levels | None = None,
               batch_size: int = 4, progress: Progress | None = None) -> Decompressed:
    """Decodes a .vqv file into codes and video; levels and errors as `decompress_codes`. The video is what
    `vqvae.decode_codes` makes of the codes, clamped to [-1, 1], i.e. what `vqvid reconstruct` shows (with the
    bottom codes zeroed for levels "top")."""
    _check_batch_size(batch_size)
    coded = decompress_codes(model, source, levels=levels, progress=progress)
    video = decode_video(model.vqvae.model, coded.codes, coded.header.frame_count, batch_size=batch_size)
    return Decompressed(coded.header, coded.codes, video, coded.levels)


@torch.no_grad()
def decode_video(vqvae: VQVAE, codes: Codes, frame_count: int, batch_size: int = 4) -> Tensor:
    """The first `frame_count` frames, (3, N, H, W) in [-1, 1] on the CPU, of the clips decoded from `codes`
    (C clips; bottom None decodes the top codes alone), `batch_size` clips at a time on the VQ-VAE's device."""
    device = next(vqvae.parameters()).device
    clips = []
    for start in range(0, codes.top.shape[0], batch_size):
        top = codes.top[start:start + batch_size].to(device)
        bottom = None if codes.bottom is None else codes.bottom[start:start + batch_size].to(device)
        clips.append(vqvae.decode_codes(top, bottom).float().clamp(-1, 1).cpu())  # (b, 3, L, H, W)
    return rearrange(torch.cat(clips), "b c t h w -> c (b t) h w")[:, :frame_count]


# --- decoding the chunks -------------------------------------------------------------------------------------


def _chunk_name(name: str, header: VQVHeader, index: int, level: str, clip: int) -> str:
    return f"{name}: chunk {index} of {header.num_chunks} ({level} codes of clip {clip})"


def _desync(where: str, header: VQVHeader, what: str) -> DesyncError:
    """The error for a chunk that decodes to other codes than were coded, with what explains it."""
    here = writer_description()
    if header.writer == here:
        stacks = (f"the file was written on this same stack ({here}), so the model folder's priors or the "
                  "file must have changed after writing")
    else:
        stacks = (f"the file was written on [{header.writer}], this decoder runs on [{here}]: the priors' "
                  "floats differ between these stacks; decode the file on a stack like the writer's")
    return DesyncError(f"{where}: {what}: this decoder's priors give other probabilities than the encoder's "
                       f"did; {stacks}")


def _decode_layers(chunks: list[bytes], checks: list[int], header: VQVHeader, priors: CodingPriors | None,
                   levels: Levels, name: str, progress: Progress | None) -> tuple[Tensor, Tensor | None]:
    """Format version 2: the top layer's chunks, then, for levels "both", the bottom layer's."""
    num_clips = header.num_clips
    shapes = {"top": header.top_shape, "bottom": header.bottom_shape}
    decoded: dict[str, list[Tensor]] = {"top": [], "bottom": []}
    wanted = ("top",) if levels == "top" else ("top", "bottom")
    total = num_clips * len(wanted)
    for layer, level in enumerate(wanted):
        for clip in range(num_clips):
            index = layer * num_clips + clip
            where = _chunk_name(name, header, index, level, clip)
            try:
                if priors is None:
                    codes = unpack_level(chunks[index], shapes[level], header.num_codes)
                else:
                    condition = None if level == "top" else decoded["top"][clip]
                    codes = decode_level(getattr(priors, level), chunks[index], condition)
            except ValueError as error:
                if priors is None:
                    raise VQVFormatError(f"{where}: {error}") from error
                raise _desync(where, header, f"the stream does not decode ({error})") from error
            found = codes_checksum(codes)
            if found != checks[index]:
                raise _desync(where, header, f"the decoded codes' checksum is {found:#010x}, the encoder "
                                             f"recorded {checks[index]:#010x}")
            decoded[level].append(codes)
            if progress is not None:
                progress(layer * num_clips + clip + 1, total)
    top = torch.cat(decoded["top"])
    return top, torch.cat(decoded["bottom"]) if levels == "both" else None


def _decode_v1(chunks: list[bytes], header: VQVHeader, priors: CodingPriors | None, levels: Levels, name: str,
               progress: Progress | None) -> tuple[Tensor, Tensor | None]:
    """Format version 1: one chunk per clip, its top then bottom codes; no checksums to check."""
    tops, bottoms = [], []
    for clip, chunk in enumerate(chunks):
        try:
            if priors is None:
                top, bottom = unpack_clip_v1(chunk, header.top_shape, header.bottom_shape, header.num_codes)
            else:
                top, bottom = decode_clip_v1(priors, chunk, bottom=levels == "both")
        except ValueError as error:
            raise VQVFormatError(f"{name}: chunk {clip} of {len(chunks)}: {error}") from error
        tops.append(top)
        bottoms.append(bottom)
        if progress is not None:
            progress(clip + 1, len(chunks))
    return torch.cat(tops), torch.cat(bottoms) if levels == "both" else None


# --- clips and codes in -----------------------------------------------------------------------------------


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")


def _check_fps(fps: float | Fraction) -> None:
    """Fails before any coding work; the header checks the exact limits."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not (0 < fps < math.inf):
        raise ValueError(f"fps: expected a positive finite frame rate, got {fps!r}")


def _pieces(video: Tensor | Iterable[Tensor], geometry: ClipGeometry) -> Iterator[Tensor]:
    """The video's frames as consecutive pieces (3, t, H, W), checked against the model's frame size."""
    height, width = geometry.height, geometry.width
    if not isinstance(video, (Tensor, Iterable)) or isinstance(video, np.ndarray):
        raise ValueError(f"video: expected a torch tensor or an iterable of them, got {type(video).__name__}")
    for index, piece in enumerate([video] if isinstance(video, Tensor) else video):
        what = "video" if isinstance(video, Tensor) else f"video piece {index}"
        if isinstance(piece, Tensor) and piece.ndim == 5:
            piece = rearrange(piece, "b c t h w -> c (b t) h w")
        if not (isinstance(piece, Tensor) and piece.is_floating_point() and piece.ndim == 4
                and piece.shape[0] == 3 and tuple(piece.shape[2:]) == (height, width)):
            found = (f"{piece.dtype} {tuple(piece.shape)}" if isinstance(piece, Tensor)
                     else type(piece).__name__)
            raise ValueError(f"{what}: expected float frames 3×N×{height}×{width} (or clips "
                             f"B×3×T×{height}×{width}) in [-1, 1] at the model's size, got {found}")
        if not torch.isfinite(piece).all():
            raise ValueError(f"{what}: expected finite values in [-1, 1], found NaN or infinity")
        yield piece


def _clips(video: Tensor | Iterable[Tensor], geometry: ClipGeometry) -> Iterator[tuple[Tensor, int]]:
    """Clips (3, L, H, W) cut from the video, each with the number of its frames that are the video's own:
    L, except in the last clip, which holds its last frame to the full length."""
    length = geometry.clip_frames
    pending: list[Tensor] = []  # the start of the next clip, fewer than L frames
    held = 0
    for piece in _pieces(video, geometry):
        offset = 0
        if held:
            offset = min(length - held, piece.shape[1])
            pending.append(piece[:, :offset])
            held += offset
            if held < length:
                continue
            yield torch.cat(pending, dim=1), length
            pending, held = [], 0
        while piece.shape[1] - offset >= length:  # views into a long tensor: no copies
            yield piece[:, offset:offset + length], length
            offset += length
        if offset < piece.shape[1]:
            pending, held = [piece[:, offset:]], piece.shape[1] - offset
    if held:
        frames = torch.cat(pending, dim=1)  # (3, held, H, W)
        hold = frames[:, -1:].expand(-1, length - held, -1, -1)
        yield torch.cat([frames, hold], dim=1), held


def _check_levels(levels: object) -> None:
    if levels not in ("top", "both"):
        raise ValueError(f"levels: expected 'top' or 'both', got {levels!r}")


def _check_codes(codes: Codes, geometry: ClipGeometry, levels: Levels) -> tuple[Tensor, Tensor | None]:
    """top (C, L/4, H/8, W/8) and bottom (C, L/2, H/4, W/4) as int64 on the CPU (bottom None for levels "top"),
    or ValueError."""
    checked = []
    for level, grid in (("top", geometry.top_shape), ("bottom", geometry.bottom_shape))[:2 if levels == "both"
                                                                                        else 1]:
        level_codes = getattr(codes, level)
        if not (isinstance(level_codes, Tensor) and not level_codes.is_floating_point()
                and not level_codes.is_complex() and level_codes.dtype != torch.bool
                and level_codes.ndim == 4 and tuple(level_codes.shape[1:]) == grid
                and level_codes.shape[0] >= 1):
            found = (f"{level_codes.dtype} {tuple(level_codes.shape)}" if isinstance(level_codes, Tensor)
                     else type(level_codes).__name__)
            raise ValueError(f"codes.{level}: expected integers (C, {', '.join(map(str, grid))}) with "
                             f"C >= 1, got {found}")
        level_codes = level_codes.detach().cpu().long()
        if level_codes.min() < 0 or level_codes.max() >= geometry.num_codes:
            raise ValueError(f"codes.{level}: expected values in [0, {geometry.num_codes}), got "
                             f"[{int(level_codes.min())}, {int(level_codes.max())}]")
        checked.append(level_codes)
    if len(checked) == 1:
        return checked[0], None
    top, bottom = checked
    if top.shape[0] != bottom.shape[0]:
        raise ValueError(f"codes: {top.shape[0]} clips of top codes but {bottom.shape[0]} of bottom codes")
    return top, bottom


def _choose_mode(model: ModelFolder, mode: Mode | None, levels: Levels) -> Mode:
    """The mode asked for, or "prior" where the folder has the priors of the levels coded, else "fixed"."""
    missing = [level for level in ("top", "bottom")[:2 if levels == "both" else 1]
               if getattr(model, level) is None]
    if mode is None:
        return "fixed" if missing else "prior"
    if mode not in ("fixed", "prior"):
        raise ValueError(f"mode: expected 'prior' or 'fixed', got {mode!r}")
    if mode == "prior" and missing:
        raise ValueError(f"mode 'prior': the model folder has no {' and '.join(missing)} prior; export it with "
                         "--top and --bottom, or use mode 'fixed'")
    return mode


def _check_header(header: VQVHeader, geometry: ClipGeometry, name: str) -> None:
    """The header's geometry must be the model's: a file written by this model always matches."""
    found = ClipGeometry(header.clip_frames, header.height, header.width, header.top_shape,
                         header.bottom_shape, header.num_codes)
    if found != geometry:
        raise VQVFormatError(f"{name}: the header describes clips {found}, but the model codes clips "
                             f"{geometry}")
    per_clip = header.num_levels if header.version >= 2 else 1
    if header.num_chunks != per_clip * header.num_clips:
        raise VQVFormatError(f"{name}: header field num_chunks: expected {per_clip} chunk(s) per clip, "
                             f"{per_clip * header.num_clips}, found {header.num_chunks}")


@torch.no_grad()
def _verify(priors: CodingPriors, top: Tensor, bottom: Tensor | None, pmfs: list[list[np.ndarray]]) -> int:
    """Positions where the batched full forward pass over clips top (b, t, h, w), bottom (b, t', h', w') gives
    the PMFs the stepper coded with (`pmfs`: per level, per clip (n, K))."""
    matching = 0
    for prior, codes, condition, stepped in ((priors.top, top, None, pmfs[0]),
                                             (priors.bottom, bottom, top, pmfs[1])):
        if codes is None:
            continue
        log_probs = prior.log_probs(codes, condition)  # (b, K, t, h, w)
        rows = rearrange(log_probs, "b k t h w -> (b t h w) k")
        full = quantize_pmf(rows).reshape(codes.shape[0], -1, prior.config.num_codes)  # (b, n, K)
        matching += int((full == np.stack(stepped)).all(axis=2).sum())
    return matching
