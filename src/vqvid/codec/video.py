"""Video to .vqv files and back: the VQ-VAE's codes, entropy-coded under the PixelSNAIL priors.

    compress(model, video, fps)      video 3×N×H×W in [-1, 1]  -> Compressed (.data: the file; .write(path))
    decompress(model, file)          .vqv path or bytes        -> Decompressed (header, codes, video)
    compress_codes / decompress_codes                             the same, from and to codes

A video of N frames is cut into consecutive clips of the model's clip length L; the last clip is padded by
repeating its last frame, and the header's frame count trims the padding off again. Each clip is one chunk of
the container (`vqvid.codec.container`):

- mode "prior": one range-coded stream (`vqvid.codec.entropy`) holding the clip's top codes in raster order
  (time, row, column) under the top prior p(top), then its bottom codes under the bottom prior
  p(bottom | top) given the clip's top codes. Its length is within a few bytes of the information content
  sum -log2 p of the codes, the rate that the priors' negative log-likelihood promises;
- mode "fixed" (a model folder without priors, or when asked): top then bottom codes packed at
  ceil(log2 K) bits each (`vqvid.codec.packing`).

The header records the model folder's fingerprint; a file is decoded only with the folder that wrote it.

Exactness. The decoder rebuilds every distribution from the codes it has decoded so far, and must get exactly
the PMFs the encoder used, or the rest of the chunk decodes to garbage. Both sides therefore run one fixed
computation: one clip at a time (batch 1) through an `IncrementalStepper` started from nothing and fed the
true codes (encoder) or the decoded ones (decoder), on the CPU, in float32, in eval mode, with
`torch.set_num_threads(1)` while it runs (restored afterwards), so that neither the caller's batch size nor
its thread count can change a single float; log-probabilities reach the coder only through `quantize_pmf`.
Files therefore decode exactly on the software and hardware stack that wrote them. Across CPUs with other
vector units, other BLAS / oneDNN builds or torch versions the same network's floats may differ in the last
bits, and the rounding to 1/16 nat in `quantize_pmf` absorbs most such differences but not all: exact
decoding across stacks would need integer networks (Ballé, Johnston and Minnen 2019, "Integer networks for
data compression with latent-variable models", ICLR), which vqvid does not have. `verify=True` measures how
robust the PMFs are: it compares, position by position, the stepper's quantised PMFs with those of the
batched full forward pass of each prior, a different float computation of the same distributions, and reports
the fraction that agree. Coding always uses the stepper.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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

from vqvid.codec.container import VQVFormatError, VQVHeader, check_fingerprint, read_vqv, write_vqv
from vqvid.codec.entropy import SequentialDecoder, SequentialEncoder, quantize_pmf
from vqvid.codec.packing import bits_per_code, pack_fixed, packed_size, unpack_fixed
from vqvid.modelpack import ModelFolder
from vqvid.models.pixelsnail import PixelSNAIL
from vqvid.models.vqvae import SPACE_FACTOR, TIME_FACTOR, VQVAE, Codes
from vqvid.sampling.steppers import IncrementalStepper

Shape3 = tuple[int, int, int]
Mode = Literal["fixed", "prior"]
Progress = Callable[[int, int], None]  # called with (clips done, clips in all) after each clip


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

    matching: int  # positions whose quantised PMFs are equal, both levels
    positions: int  # positions compared

    @property
    def fraction(self) -> float:
        return self.matching / self.positions if self.positions else 1.0


@dataclass(frozen=True)
class Compressed:
    """A coded video: the container's header and chunks, and what was coded."""

    header: VQVHeader
    chunks: list[bytes]  # one per clip
    codes: Codes  # top (C, L/4, H/8, W/8), bottom (C, L/2, H/4, W/4), int64 on the CPU, for C clips
    # sum of -log2 p(code) under each prior, from its float log-probabilities: the rate the model promises.
    # Mode "fixed": codes × bits_per_code, what packing costs.
    top_bits: float
    bottom_bits: float
    verification: Verification | None  # with verify=True in mode "prior"

    @cached_property
    def data(self) -> bytes:
        """The whole .vqv file."""
        buffer = BytesIO()
        write_vqv(buffer, self.header, self.chunks)
        return buffer.getvalue()

    def write(self, path: str | os.PathLike) -> Path:
        """Writes the file atomically (a crash leaves the old file or the whole new one); returns the path."""
        write_vqv(path, self.header, self.chunks)
        return Path(path)

    @property
    def size(self) -> int:
        """Bytes of the whole file, container included: what every rate below counts."""
        return len(self.data)

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
        positions = math.prod(header.top_shape) + math.prod(header.bottom_shape)
        payload = header.num_chunks * packed_size(positions, header.num_codes)
        return self.size - sum(map(len, self.chunks)) + payload


class CodedVideo(NamedTuple):
    header: VQVHeader
    codes: Codes  # top (C, L/4, H/8, W/8), bottom (C, L/2, H/4, W/4), int64 on the CPU


class Decompressed(NamedTuple):
    header: VQVHeader
    codes: Codes  # as in CodedVideo
    video: Tensor  # (3, N, H, W) float32 in [-1, 1] on the CPU, N = header.frame_count


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
             mode: Mode | None = None, verify: bool = False, batch_size: int = 4,
             progress: Progress | None = None) -> Compressed:
    """Encodes a video with the folder's VQ-VAE and codes the codes into a .vqv file (module docstring).

    video: frames 3×N×H×W in [-1, 1] at the model's size, or clips B×3×T×H×W played one after another, or an
    iterable of such tensors (consecutive pieces of one video, read as they come). fps: the frame rate the
    header records. mode: "prior" (the default when the folder has both priors) or "fixed". batch_size: clips
    per VQ-VAE forward pass (on the VQ-VAE's device) and per verification pass; the coding does not depend
    on it. verify: also compare the stepper's PMFs with the batched full forward pass
    (`Compressed.verification`).
    """
    geometry = clip_geometry(model)
    _check_batch_size(batch_size)
    _choose_mode(model, mode)
    _check_fps(fps)
    vqvae = model.vqvae.model
    parameter = next(vqvae.parameters())
    tops, bottoms, batch, frame_count = [], [], [], 0
    for clip, frames in _clips(video, geometry):
        batch.append(clip)
        frame_count += frames
        if len(batch) == batch_size:
            tops, bottoms = _encode_into(vqvae, batch, parameter, tops, bottoms)
            batch = []
    if batch:
        tops, bottoms = _encode_into(vqvae, batch, parameter, tops, bottoms)
    if not frame_count:
        raise ValueError("video: expected at least one frame, got none")
    codes = Codes(top=torch.cat(tops), bottom=torch.cat(bottoms))
    return compress_codes(model, codes, frame_count, fps, mode=mode, verify=verify, batch_size=batch_size,
                          progress=progress)


def compress_codes(model: ModelFolder, codes: Codes, frame_count: int, fps: float | Fraction, *,
                   mode: Mode | None = None, verify: bool = False, batch_size: int = 4,
                   progress: Progress | None = None) -> Compressed:
    """Codes the codes of C consecutive clips, top (C, L/4, H/8, W/8) and bottom (C, L/2, H/4, W/4) integers,
    of a video of `frame_count` frames (more than (C - 1) L, at most C L) into a .vqv file."""
    geometry = clip_geometry(model)
    _check_batch_size(batch_size)
    mode = _choose_mode(model, mode)
    top, bottom = _check_codes(codes, geometry)
    num_clips = top.shape[0]
    length = geometry.clip_frames
    if not (num_clips - 1) * length < frame_count <= num_clips * length:
        raise ValueError(f"frame_count: {num_clips} clips of {length} frames hold "
                         f"{(num_clips - 1) * length + 1} to {num_clips * length} frames, got {frame_count}")
    if not model.fingerprint:
        raise ValueError("model folder: model.json has no fingerprint; write the folder again with "
                         "`vqvid export`")
    header = VQVHeader(fingerprint=model.fingerprint, mode=mode, num_codes=geometry.num_codes,
                       frame_count=frame_count, fps=fps, height=geometry.height, width=geometry.width,
                       clip_frames=geometry.clip_frames, top_shape=geometry.top_shape,
                       bottom_shape=geometry.bottom_shape, num_chunks=num_clips)
    if mode == "fixed":
        chunks = []
        for i in range(num_clips):
            chunks.append(pack_fixed(torch.cat([top[i].flatten(), bottom[i].flatten()]).numpy(),
                                     geometry.num_codes))
            if progress is not None:
                progress(i + 1, num_clips)
        width = bits_per_code(geometry.num_codes)
        return Compressed(header, chunks, Codes(top, bottom), float(width * top.numel()),
                          float(width * bottom.numel()), None)

    priors = _coding_priors(model)
    chunks, top_bits, bottom_bits = [], 0.0, 0.0
    matching = 0
    for start in range(0, num_clips, batch_size):
        indices = range(start, min(start + batch_size, num_clips))
        coded = []
        for i in indices:
            chunk = _encode_chunk(priors, top[i], bottom[i], keep_pmfs=verify)
            chunks.append(chunk.data)
            top_bits, bottom_bits = top_bits + chunk.top_bits, bottom_bits + chunk.bottom_bits
            coded.append(chunk)
            if progress is not None:
                progress(i + 1, num_clips)
        if verify:
            matching += _verify(priors, top[indices.start:indices.stop], bottom[indices.start:indices.stop],
                                coded)
    verification = Verification(matching, num_clips * geometry.positions) if verify else None
    return Compressed(header, chunks, Codes(top, bottom), top_bits, bottom_bits, verification)


def decompress_codes(model: ModelFolder, source: str | os.PathLike | bytes, *,
                     progress: Progress | None = None) -> CodedVideo:
    """The codes of a .vqv file (a path or its bytes) written with this model folder.

    Raises `VQVFormatError` for a file that is damaged, truncated, made with another model
    (`FingerprintMismatchError`) or does not fit the model; OSError for a file that cannot be read.
    """
    name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    file = read_vqv(source)
    header = file.header
    check_fingerprint(header, model.fingerprint)
    geometry = clip_geometry(model)
    _check_header(header, geometry, name)
    if header.mode == "prior" and not model.has_priors:
        raise ValueError(f"{name}: coded under the priors, but the model folder has "
                         f"{'no top prior' if model.top is None else 'no bottom prior'}")
    priors = _coding_priors(model) if header.mode == "prior" else None
    tops, bottoms = [], []
    for i, chunk in enumerate(file.chunks):
        try:
            if priors is None:
                top, bottom = _unpack_chunk(chunk, geometry)
            else:
                top, bottom = _decode_chunk(priors, chunk)
        except ValueError as error:
            raise VQVFormatError(f"{name}: chunk {i} of {len(file.chunks)}: {error}") from error
        tops.append(top)
        bottoms.append(bottom)
        if progress is not None:
            progress(i + 1, len(file.chunks))
    return CodedVideo(header, Codes(top=torch.cat(tops), bottom=torch.cat(bottoms)))


def decompress(model: ModelFolder, source: str | os.PathLike | bytes, *, batch_size: int = 4,
               progress: Progress | None = None) -> Decompressed:
    """Decodes a .vqv file into codes and video; errors as `decompress_codes`. The video is what
    `vqvae.decode_codes` makes of the codes, clamped to [-1, 1], i.e. what `vqvid reconstruct` shows."""
    _check_batch_size(batch_size)
    coded = decompress_codes(model, source, progress=progress)
    video = decode_video(model.vqvae.model, coded.codes, coded.header.frame_count, batch_size=batch_size)
    return Decompressed(coded.header, coded.codes, video)


@torch.no_grad()
def decode_video(vqvae: VQVAE, codes: Codes, frame_count: int, batch_size: int = 4) -> Tensor:
    """The first `frame_count` frames, (3, N, H, W) in [-1, 1] on the CPU, of the clips decoded from `codes`
    (C clips), `batch_size` clips at a time on the VQ-VAE's device."""
    device = next(vqvae.parameters()).device
    clips = [
        vqvae.decode_codes(codes.top[start:start + batch_size].to(device),
                           codes.bottom[start:start + batch_size].to(device)).float().clamp(-1, 1).cpu()
        for start in range(0, codes.top.shape[0], batch_size)
    ]  # each (b, 3, L, H, W)
    return rearrange(torch.cat(clips), "b c t h w -> c (b t) h w")[:, :frame_count]


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


def _encode_into(vqvae: VQVAE, batch: list[Tensor], parameter: Tensor, tops: list[Tensor],
                 bottoms: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    clips = torch.stack(batch).to(parameter.device, parameter.dtype)  # (b, 3, L, H, W) in [-1, 1]
    codes = vqvae.encode(clips)
    return tops + [codes.top.cpu()], bottoms + [codes.bottom.cpu()]


def _check_codes(codes: Codes, geometry: ClipGeometry) -> tuple[Tensor, Tensor]:
    """top (C, L/4, H/8, W/8) and bottom (C, L/2, H/4, W/4) as int64 on the CPU, or ValueError."""
    checked = []
    for level, grid in (("top", geometry.top_shape), ("bottom", geometry.bottom_shape)):
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
    top, bottom = checked
    if top.shape[0] != bottom.shape[0]:
        raise ValueError(f"codes: {top.shape[0]} clips of top codes but {bottom.shape[0]} of bottom codes")
    return top, bottom


def _choose_mode(model: ModelFolder, mode: Mode | None) -> Mode:
    if mode is None:
        return "prior" if model.has_priors else "fixed"
    if mode not in ("fixed", "prior"):
        raise ValueError(f"mode: expected 'prior' or 'fixed', got {mode!r}")
    if mode == "prior" and not model.has_priors:
        missing = " and ".join(level for level in ("top", "bottom") if getattr(model, level) is None)
        raise ValueError(f"mode 'prior': the model folder has no {missing} prior; export it with --top and "
                         "--bottom, or use mode 'fixed'")
    return mode


def _check_header(header: VQVHeader, geometry: ClipGeometry, name: str) -> None:
    """The header's geometry must be the model's: a file written by this model always matches."""
    found = ClipGeometry(header.clip_frames, header.height, header.width, header.top_shape,
                         header.bottom_shape, header.num_codes)
    if found != geometry:
        raise VQVFormatError(f"{name}: the header describes clips {found}, but the model codes clips "
                             f"{geometry}")
    if header.num_chunks != header.num_clips:
        raise VQVFormatError(f"{name}: header field num_chunks: expected one chunk per clip, "
                             f"{header.num_clips}, found {header.num_chunks}")


# --- the coding path ----------------------------------------------------------------------------------------


class _Priors(NamedTuple):
    top: PixelSNAIL  # on the CPU, float32, eval mode
    bottom: PixelSNAIL


class _Chunk(NamedTuple):
    data: bytes
    top_bits: float  # -log2 p of the clip's top codes under the top prior, float
    bottom_bits: float
    pmfs: tuple[np.ndarray, np.ndarray] | None  # the PMFs coded, top (n_top, K) and bottom, for verification


def _coding_priors(model: ModelFolder) -> _Priors:
    """The folder's priors as the coder runs them: on the CPU, in float32 and eval mode. A prior elsewhere is
    copied, so that the caller's module stays where the caller put it."""

    def fixed(prior: PixelSNAIL) -> PixelSNAIL:
        parameter = next(prior.parameters())
        if parameter.device.type == "cpu" and parameter.dtype == torch.float32 and not prior.training:
            return prior
        return copy.deepcopy(prior).to("cpu", torch.float32).eval()

    return _Priors(fixed(model.top.model), fixed(model.bottom.model))


@contextmanager
def _fixed_computation() -> Iterator[None]:
    """One intra-op thread, no autograd: how a float reduction is split then depends on tensor shapes alone,
    never on how many threads the caller allows. The previous thread count is restored on the way out.
    Inference mode rather than no_grad: it drops autograd's per-op bookkeeping, about a quarter of a step's time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(threads)


def _encode_level(prior: PixelSNAIL, codes: Tensor, condition: Tensor | None, encoder: SequentialEncoder,
                  keep_pmfs: bool) -> tuple[float, np.ndarray | None]:
    """Encodes codes (t, h, w) position by position; returns their -log2 p in bits and, if asked, the PMFs
    (t h w, K) used. Mirrors `_decode_level` step for step: a stepper started from nothing, fed the codes."""
    stepper = IncrementalStepper(prior, 1, condition=condition)
    symbols = codes.reshape(-1)  # (n,) int64, raster order
    nats = 0.0
    pmfs = []
    for position, symbol in enumerate(symbols.tolist()):
        log_probs = stepper.step_log_probs()  # (1, K)
        pmf = quantize_pmf(log_probs)[0]  # (K,) uint32, sums to 2**24
        encoder.encode(symbol, pmf)
        nats -= float(log_probs[0, symbol])
        if keep_pmfs:
            pmfs.append(pmf)
        stepper.feed(symbols[position:position + 1])
    return nats / math.log(2), np.stack(pmfs) if keep_pmfs else None


def _decode_level(prior: PixelSNAIL, decoder: SequentialDecoder, condition: Tensor | None) -> Tensor:
    """Decodes one grid of codes, (1, t, h, w) int64, feeding each code back into the stepper."""
    stepper = IncrementalStepper(prior, 1, condition=condition)
    for _ in range(math.prod(prior.config.shape)):
        pmf = quantize_pmf(stepper.step_log_probs())[0]  # (K,)
        stepper.feed(torch.tensor([decoder.decode(pmf)], dtype=torch.int64))
    return stepper.codes


def _encode_chunk(priors: _Priors, top: Tensor, bottom: Tensor, keep_pmfs: bool) -> _Chunk:
    """One clip's top (t, h, w) then bottom codes (t', h', w') into one range-coded stream."""
    encoder = SequentialEncoder()
    with _fixed_computation():
        top_bits, top_pmfs = _encode_level(priors.top, top, None, encoder, keep_pmfs)
        bottom_bits, bottom_pmfs = _encode_level(priors.bottom, bottom, top[None], encoder, keep_pmfs)
    return _Chunk(encoder.finish(), top_bits, bottom_bits, (top_pmfs, bottom_pmfs) if keep_pmfs else None)


def _decode_chunk(priors: _Priors, data: bytes) -> tuple[Tensor, Tensor]:
    """Inverse of `_encode_chunk`: top (1, t, h, w) and bottom (1, t', h', w') int64."""
    decoder = SequentialDecoder(data)
    with _fixed_computation():
        top = _decode_level(priors.top, decoder, None)
        bottom = _decode_level(priors.bottom, decoder, top)
    return top, bottom


def _unpack_chunk(data: bytes, geometry: ClipGeometry) -> tuple[Tensor, Tensor]:
    """A fixed-width chunk: top (1, t, h, w) and bottom (1, t', h', w') int64."""
    flat = torch.from_numpy(unpack_fixed(data, geometry.positions, geometry.num_codes))  # (n_top + n_bottom,)
    top, bottom = flat.split([math.prod(geometry.top_shape), math.prod(geometry.bottom_shape)])
    return top.reshape(1, *geometry.top_shape), bottom.reshape(1, *geometry.bottom_shape)


@torch.no_grad()
def _verify(priors: _Priors, top: Tensor, bottom: Tensor, coded: list[_Chunk]) -> int:
    """Positions where the batched full forward pass over clips top (b, t, h, w), bottom (b, t', h', w') gives
    the PMFs the stepper coded with."""
    matching = 0
    for level, prior, codes, condition in (("top", priors.top, top, None),
                                           ("bottom", priors.bottom, bottom, top)):
        log_probs = prior.log_probs(codes, condition)  # (b, K, t, h, w)
        rows = rearrange(log_probs, "b k t h w -> (b t h w) k")
        full = quantize_pmf(rows).reshape(codes.shape[0], -1, prior.config.num_codes)  # (b, n, K)
        stepped = np.stack([chunk.pmfs[0 if level == "top" else 1] for chunk in coded])  # (b, n, K)
        matching += int((full == stepped).all(axis=2).sum())
    return matching
