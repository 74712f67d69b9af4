"""Video to .vqv files and back: the VQ-VAE's codes, entropy-coded under the PixelSNAIL priors.

    compress(model, video, fps)      video 3×N×H×W in [-1, 1]  -> Compressed (.data: the file; .write(path))
    decompress(model, file)          .vqv path or bytes        -> Decompressed (header, codes, video)
    compress_codes / decompress_codes                             the same, from and to codes

A video of N frames is cut into consecutive clips of the model's clip length L (`vqvid.codec.clips`); the last
clip is padded by repeating its last frame, and the header's frame count trims the padding off again. Each clip
gives one chunk of top codes and one of bottom codes (`vqvid.codec.coding`, the coding path, says what a chunk
holds and how it is computed); the file holds every clip's top chunk before any bottom chunk. So a file can
be decoded at two qualities: `levels="top"` decodes the top codes alone (the coarse video, from a fraction of
the bits), and a file written with `levels="top"`, or cut after its top layer, still decodes to that coarse
video.

The header records the model folder's fingerprint and the stack that wrote the file; a file is decoded only
with the folder that wrote it, and a chunk whose decoded codes fail their checksum raises `DesyncError` naming
the chunk and both stacks instead of returning wrong codes. Encoding, coding and decoding never depend on the
caller's batch size or thread count (`vqvid.codec.coding`, "Exactness"); `batch_size` only groups the VQ-VAE
decoder's passes (whose floats may differ in the last bits between batch sizes) and the verification passes.
`coding_batch` is another thing: how many clips the priors code at once (faster for more; the header records it,
and the decoder codes as many at once, whatever its caller's settings).
`verify=True` measures how robust the PMFs are: it compares, position by position, the stepper's quantised
PMFs with those of the batched full forward pass of each prior, a different float computation of the same
distributions, and reports the fraction that agree. Coding always uses the stepper.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
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

from vqvid.codec.clips import cut_clips
from vqvid.codec.coding import (
    CodingPriors,
    Progress,
    check_coding_batch,
    coding_priors,
    coding_vqvae,
    decode_chunks,
    default_coding_batch,
    encode_chunks,
    encode_clip,
    writer_description,
)
from vqvid.codec.container import VQVFormatError, VQVHeader, check_fingerprint, read_vqv, write_vqv
from vqvid.codec.entropy import quantize_pmf
from vqvid.codec.packing import packed_size
from vqvid.geometry import ClipGeometry, clip_geometry
from vqvid.models.vqvae import VQVAE, Codes
from vqvid.persistence import ModelFolder

Mode = Literal["fixed", "prior"]
Levels = Literal["top", "both"]


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


class TopCodesOnlyError(VQVFormatError):
    """Both levels asked of a .vqv file that holds only its top codes; its top level alone can be decoded."""


def compress(model: ModelFolder, video: Tensor | Iterable[Tensor], fps: float | Fraction, *,
             mode: Mode | None = None, levels: Levels = "both", verify: bool = False, batch_size: int = 4,
             coding_batch: int | None = None, progress: Progress | None = None) -> Compressed:
    """Encodes a video with the folder's VQ-VAE and codes the codes into a .vqv file (module docstring).

    video: frames 3×N×H×W in [-1, 1] at the model's size, or clips B×3×T×H×W played one after another, or an
    iterable of such tensors (consecutive pieces of one video, read as they come). fps: the frame rate the
    header records. mode: "prior" (the default when the folder has both priors) or "fixed". levels: "both",
    or "top" for a file of the top codes alone. Each clip is encoded alone (`vqvid.codec.coding.encode_clip`),
    on the VQ-VAE's device. batch_size: clips per verification pass; the file does not depend on it. verify:
    also compare the stepper's PMFs with the batched full forward pass (`Compressed.verification`).
    coding_batch: clips whose codes the priors code at once, 1 to `MAX_CODING_BATCH` (default
    `default_coding_batch`); the header records the smaller of it and the number of clips.
    """
    geometry = clip_geometry(model)
    _check_batch_size(batch_size)
    if coding_batch is not None:
        check_coding_batch(coding_batch)
    _check_levels(levels)
    _choose_mode(model, mode, levels)
    _check_fps(fps)
    vqvae = coding_vqvae(model.vqvae.model)
    tops, bottoms, frame_count = [], [], 0
    for clip, frames in cut_clips(video, geometry):
        codes = encode_clip(vqvae, clip)
        tops.append(codes.top)
        bottoms.append(codes.bottom)
        frame_count += frames
    if not frame_count:
        raise ValueError("video: expected at least one frame, got none")
    codes = Codes(top=torch.cat(tops), bottom=torch.cat(bottoms))
    return compress_codes(model, codes, frame_count, fps, mode=mode, levels=levels, verify=verify,
                          batch_size=batch_size, coding_batch=coding_batch, progress=progress)


def compress_codes(model: ModelFolder, codes: Codes, frame_count: int, fps: float | Fraction, *,
                   mode: Mode | None = None, levels: Levels = "both", verify: bool = False, batch_size: int = 4,
                   coding_batch: int | None = None, progress: Progress | None = None) -> Compressed:
    """Codes the codes of C consecutive clips, top (C, L/4, H/8, W/8) and bottom (C, L/2, H/4, W/4) integers,
    of a video of `frame_count` frames (more than (C - 1) L, at most C L) into a .vqv file. With levels "top"
    the bottom codes may be None; they are not coded. coding_batch as in `compress`."""
    geometry = clip_geometry(model)
    _check_batch_size(batch_size)
    if coding_batch is not None:
        check_coding_batch(coding_batch)
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
    priors, batch = None, 1
    if mode == "prior":
        priors = coding_priors(model.top.model, model.bottom.model if bottom is not None else None)
        batch = min(coding_batch or default_coding_batch(priors), num_clips)
    header = VQVHeader(fingerprint=model.fingerprint, mode=mode, num_codes=geometry.num_codes,
                       frame_count=frame_count, fps=fps, height=geometry.height, width=geometry.width,
                       clip_frames=geometry.clip_frames, top_shape=geometry.top_shape,
                       bottom_shape=geometry.bottom_shape, num_chunks=(1 if bottom is None else 2) * num_clips,
                       levels=levels, writer=writer_description(), coding_batch=batch)
    coded = encode_chunks(priors, top, bottom, geometry.num_codes, coding_batch=batch, keep_pmfs=verify,
                          progress=progress)
    verification = None
    if verify:
        matching = sum(_verify(priors, top[start:start + batch_size],
                               None if bottom is None else bottom[start:start + batch_size],
                               [level_pmfs[start:start + batch_size] for level_pmfs in coded.pmfs])
                       for start in range(0, num_clips, batch_size))
        positions = top.numel() + (0 if bottom is None else bottom.numel())
        verification = Verification(matching, positions)
    return Compressed(header, coded.chunks, coded.checks, Codes(top, bottom), coded.top_bits, coded.bottom_bits,
                      verification)


def decompress_codes(model: ModelFolder, source: str | os.PathLike | bytes, *, levels: Levels | None = None,
                     progress: Progress | None = None) -> CodedVideo:
    """The codes of a .vqv file (a path or its bytes) written with this model folder.

    levels: "top" decodes the top codes alone, also of a file cut short anywhere after its top layer; "both"
    needs a file that holds both; None (the default) decodes what the file holds: both levels, or the top codes
    of a file written with levels "top" or cut exactly after its top layer.
    Raises `VQVFormatError` for a file that is damaged, truncated, made with another model
    (`FingerprintMismatchError`), does not fit the model, or whose decoded codes fail their checksums
    (`DesyncError`); OSError for a file that cannot be read.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    if levels is not None:
        _check_levels(levels)
    file = read_vqv(source, top_only=levels == "top")
    header = file.header
    check_fingerprint(header, model.fingerprint)
    geometry = clip_geometry(model)
    _check_header(header, geometry, name)
    held: Levels = "both" if file.complete and header.levels == "both" else "top"
    if levels == "both" and held == "top":
        raise TopCodesOnlyError(f"{name}: holds only top codes ("
                                + ("written with the top level alone" if header.levels == "top" else
                                   "the file ends after its top layer")
                                + "), so only its top level can be decoded")
    levels = levels or held
    if header.mode == "prior":
        missing = missing_priors(model, levels)
        if missing:
            raise ValueError(f"{name}: coded under the priors, but the model folder has no "
                             f"{' and no '.join(missing)} prior")
        priors = coding_priors(model.top.model, model.bottom.model if levels == "both" else None)
    else:
        priors = None
    top, bottom = decode_chunks(file, priors, levels, name, progress)
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


# --- clips and codes in -----------------------------------------------------------------------------------


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")


def _check_fps(fps: float | Fraction) -> None:
    """Fails before any coding work; the header checks the exact limits."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not (0 < fps < math.inf):
        raise ValueError(f"fps: expected a positive finite frame rate, got {fps!r}")


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


def missing_priors(model: ModelFolder, levels: Levels) -> list[str]:
    """The levels ("top", "bottom") among those coded whose prior the model folder lacks."""
    return [level for level in ("top", "bottom")[:2 if levels == "both" else 1] if getattr(model, level) is None]


def _choose_mode(model: ModelFolder, mode: Mode | None, levels: Levels) -> Mode:
    """The mode asked for, or "prior" where the folder has the priors of the levels coded, else "fixed"."""
    missing = missing_priors(model, levels)
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
