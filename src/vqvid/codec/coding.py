"""The coding path of .vqv files: what each chunk holds, and the one fixed computation that makes it.

Everything here decides the bytes of a file, so a change here that changes them must bump
`vqvid.codec.container.FORMAT_VERSION` (and the golden tests with it). How a video is cut into clips lives in
`vqvid.codec.clips`; the `compress` / `decompress` API and what it returns in `vqvid.codec.video`.

A file holds the top chunk of every clip, then (levels "both") the bottom chunk of every clip (`encode_chunks`,
`decode_chunks`). A chunk (format versions 2 to 4) holds one level of one clip:
- mode "prior": one range-coded stream (`vqvid.codec.entropy`) of the clip's codes of that level in raster
  order (time, row, column): top codes under the top prior p(top), bottom codes under the bottom prior
  p(bottom | top) given the clip's top codes. Its length is within a few bytes of the information content
  sum -log2 p of the codes, the rate that the priors' negative log-likelihood promises;
- mode "fixed": the codes packed at ceil(log2 K) bits each (`vqvid.codec.packing`).
Its entry in the chunk table carries `codes_checksum` of the codes it holds, which the decoder recomputes
from what it decoded (version 1 chunks held a clip's top then bottom codes in one stream, with no checksum).

Coding batches (format versions 3 and 4). The priors step through B clips at once, B the header's coding batch:
clips 0..B-1, then B..2B-1, and so on, each group through one stepper of batch B, the last group
filled up with dummy clips of code 0 whose codes are coded nowhere (`encode_group`, `decode_group`). A step
then costs little more for B clips than for one, since at small widths the per-operation overhead dominates:
`benchmarks/bench_codec.py` measures the positions per second. Each clip keeps its own stream, so a chunk is
still one level of one clip, with its own checksum, and the top layer still decodes alone. One stream per clip
rather than B streams interleaved into one: interleaving would save at most the 4-8 bytes each stream's tail
costs, but would tie every clip's chunk to its group's, and the time goes to the priors, not to the coder.
Version 2 files were coded one clip at a time, which is a coding batch of 1.

Steppers (`stepper_class`). Version 4 steps with `FusedStepper`, which computes each position's distribution in a
few fused operations (at the default coding batch of 32, 1.6x the positions per second of `IncrementalStepper`
encoding and 1.8x decoding: `benchmarks/bench_codec.py`); versions 1-3 step with `IncrementalStepper`, module by
module, and are still decoded with it: the two agree to float rounding, not bit for bit, and the decoder must
reproduce the encoder's floats exactly.

Exactness. The decoder rebuilds every distribution from the codes it has decoded so far, and must get exactly the
PMFs the encoder used, or the rest of the chunk decodes to garbage. Both sides therefore run one fixed computation
(`pinned_computation`): the header's coding batch of clips (the dummy clips included) through the stepper of the
file's version, started from nothing and fed the true codes (encoder) or the decoded ones (decoder), on the CPU, in
float32, in eval mode, with one intra-op thread, full-precision float32 matmuls and no autocast while it runs (the
caller's settings are restored afterwards); log-probabilities reach the coder only through `quantize_pmf`. Which
clips share a group, and in which slot, follows from the clip index and the coding batch alone. The VQ-VAE's encode
step runs under the same settings, one clip at a time, from a float32 eval copy: so neither the caller's batch
size, thread count, float precision nor TF32 setting can change a single code or byte. The coding batch itself does
change the floats (other matrix shapes, other kernels), which is why the header records it.

Files therefore decode exactly on the software and hardware stack that wrote them. Across CPUs with other
vector units, other BLAS / oneDNN builds or torch versions the same network's floats may differ in the last
bits; the rounding to 1/16 nat in `quantize_pmf` absorbs most such differences but not all. Exact decoding
across stacks would need integer networks (Ballé, Johnston and Minnen 2019, "Integer networks for data
compression with latent-variable models", ICLR), which vqvid does not have. What vqvid guarantees instead is
that a decoder whose PMFs differ never returns wrong codes silently: the codes checksum of each chunk fails,
and the error names the chunk and both stacks (the header's `writer`, `writer_description` here).
"""

from __future__ import annotations

import copy
import math
import platform
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vqvid.codec.container import FORMAT_VERSION, MAX_CODING_BATCH, VQVFile, VQVFormatError, VQVHeader
from vqvid.codec.entropy import SequentialDecoder, SequentialEncoder, decode_each, quantize_pmf
from vqvid.codec.packing import bits_per_code, pack_fixed, unpack_fixed
from vqvid.models.pixelsnail import PixelSNAIL
from vqvid.models.vqvae import VQVAE, Codes
from vqvid.precision import full_precision_float32
from vqvid.sampling.fused import FusedStepper
from vqvid.sampling.steppers import IncrementalStepper

Progress = Callable[[int, int], None]  # called with (chunks done, chunks in all) after each chunk


class DesyncError(VQVFormatError):
    """A chunk whose decoded codes are not the ones the encoder coded: the decoder's priors gave other PMFs."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def writer_description() -> str:
    """What a decoder needs to explain a refusal: the software and CPU whose floats made the PMFs.
    Printable ASCII, at most 255 characters (the header's `writer` field)."""
    text = (f"vqvid {_version('vqvid')}; torch {torch.__version__}; cpu {platform.machine()} "
            f"{torch.backends.cpu.get_cpu_capability()}; numpy {np.__version__}; "
            f"constriction {_version('constriction')}")
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)[:255]


def codes_checksum(codes: Tensor) -> int:
    """CRC32 of integer codes in [0, 65536) (any shape, C order) as little-endian 16-bit words."""
    return zlib.crc32(codes.detach().cpu().numpy().astype("<u2").tobytes())


@contextmanager
def pinned_computation() -> Iterator[None]:
    """The settings every float of the coding path is computed under; the caller's are restored on the way out.

    One intra-op thread: how a float reduction is split then depends on tensor shapes alone, never on how many
    threads the caller allows. Full-precision float32 matmuls and convolutions (no TF32, no bfloat16 matmuls
    on CPUs that offer them), deterministic cuDNN algorithms, no autocast. Inference mode rather than no_grad:
    it drops autograd's per-op bookkeeping, about a quarter of a prior step's time.
    """
    threads = torch.get_num_threads()
    cudnn = torch.backends.cudnn
    flags = (cudnn.deterministic, cudnn.benchmark)
    torch.set_num_threads(1)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        with (full_precision_float32(), torch.autocast("cpu", enabled=False),
              torch.autocast("cuda", enabled=False), torch.inference_mode()):
            yield
    finally:
        cudnn.deterministic, cudnn.benchmark = flags
        torch.set_num_threads(threads)


def _float32_eval(module: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """The module in float32 and eval mode on `device`: itself if it already is, else a copy, so that the
    caller's module stays as the caller left it."""
    parameter = next(module.parameters())
    if parameter.device == torch.device(device) and parameter.dtype == torch.float32 and not module.training:
        return module
    return copy.deepcopy(module).to(device, torch.float32).eval()


# --- the VQ-VAE's step ----------------------------------------------------------------------------------------


def coding_vqvae(vqvae: VQVAE) -> VQVAE:
    """The VQ-VAE as the encode step runs it: float32, eval mode, on the device the caller put it on."""
    return _float32_eval(vqvae, next(vqvae.parameters()).device)


def encode_clip(vqvae: VQVAE, clip: Tensor) -> Codes:
    """Codes of one clip (3, L, H, W) in [-1, 1]: top (1, L/4, H/8, W/8), bottom (1, L/2, H/4, W/4), int64 on
    the CPU. Always batch 1 under `pinned_computation`: a nearest-code assignment is a comparison of floats,
    and a batch of several clips, or another thread count, computes the same convolutions with other
    reduction orders, which flips codes whose two nearest codebook vectors are almost equally near.
    `vqvae` from `coding_vqvae`."""
    parameter = next(vqvae.parameters())
    with pinned_computation():
        codes = vqvae.encode(clip[None].to(parameter.device, torch.float32))
    return Codes(top=codes.top.cpu(), bottom=codes.bottom.cpu())


# --- the priors' step ----------------------------------------------------------------------------------------

DEFAULT_CODING_BATCH = 32  # clips per coding batch by default, chosen at `tiny` width by bench_codec.py
CODING_MEMORY = 2 << 30  # bytes of stepper caches the default batch may take, so that any decoder can hold it


class CodingPriors(NamedTuple):
    top: PixelSNAIL | None  # on the CPU, float32, eval mode; None where the folder has no such prior
    bottom: PixelSNAIL | None


def coding_priors(top: PixelSNAIL | None, bottom: PixelSNAIL | None) -> CodingPriors:
    """The priors as the coder runs them: on the CPU, in float32 and eval mode (`_float32_eval`)."""
    return CodingPriors(*(None if prior is None else _float32_eval(prior, "cpu") for prior in (top, bottom)))


def stepper_bytes(prior: PixelSNAIL) -> int:
    """About the bytes an `IncrementalStepper` of one clip holds for `prior`: 8 grids of `channels` floats
    per residual layer, plus each attention layer's keys and values (within a tenth at the presets' widths)."""
    config = prior.config
    per_position = 8 * config.n_blocks * config.n_res_blocks * config.channels
    if config.attention:
        per_position += config.n_blocks * (config.key_channels + config.value_channels)
    return 4 * math.prod(config.shape) * per_position


def default_coding_batch(priors: CodingPriors) -> int:
    """`DEFAULT_CODING_BATCH`, halved while that many clips' stepper caches of the larger prior exceed
    `CODING_MEMORY`: 32 for the `tiny` priors, 1 for the `thesis` bottom prior (1.6 GB a clip). A function of
    the priors' configurations alone, so the same command writes the same bytes on every machine."""
    largest = max(stepper_bytes(prior) for prior in priors if prior is not None)
    batch = DEFAULT_CODING_BATCH
    while batch > 1 and batch * largest > CODING_MEMORY:
        batch //= 2
    return batch


def check_coding_batch(coding_batch: int, name: str = "coding_batch") -> int:
    """`coding_batch` if it is an integer in [1, MAX_CODING_BATCH], else ValueError naming `name`."""
    if isinstance(coding_batch, bool) or not isinstance(coding_batch, int) \
            or not 1 <= coding_batch <= MAX_CODING_BATCH:
        raise ValueError(f"{name} {coding_batch!r}: expected a whole number of clips from 1 to {MAX_CODING_BATCH}")
    return coding_batch


class EncodedLevel(NamedTuple):
    data: bytes  # the range-coded stream
    bits: float  # -log2 p of the codes under the prior, from its float log-probabilities
    pmfs: np.ndarray | None  # (n, K) the quantised PMFs coded, in raster order, if asked for (verification)


_STEPS_PER_BLOCK = 256  # the encoder quantises and codes its PMFs in blocks of this many steps: a few MB


def _padded(codes: Tensor | None, batch: int) -> Tensor | None:
    """codes (b, ...) followed by batch - b dummy clips of code 0: (batch, ...)."""
    if codes is None or codes.shape[0] == batch:
        return codes
    return torch.cat([codes, codes.new_zeros(batch - codes.shape[0], *codes.shape[1:])])


def _check_group(prior: PixelSNAIL, clips: int, batch: int, condition: Tensor | None) -> None:
    if not 1 <= clips <= batch:
        raise ValueError(f"a coding batch of {batch} holds 1 to {batch} clips, got {clips}")
    if (condition is None) != (prior.config.condition_shape is None) or (
            condition is not None and condition.shape[0] != clips):
        raise ValueError(f"condition: expected top codes for each of the {clips} clip(s) of the bottom prior, "
                         "None for the top prior")


def stepper_class(version: int) -> type[IncrementalStepper]:
    """The stepper whose PMFs files of format `version` are coded under (module docstring, Steppers)."""
    return FusedStepper if version >= 4 else IncrementalStepper


def encode_group(prior: PixelSNAIL, codes: Tensor, condition: Tensor | None, batch: int,
                 keep_pmfs: bool = False, version: int = FORMAT_VERSION) -> list[EncodedLevel]:
    """Chunks of mode "prior" of b <= `batch` clips' codes (b, t, h, w) of one level under `prior`, given the
    clips' top codes `condition` (b, t', h', w') for the bottom prior: one range-coded stream per clip.

    The PMFs of all clips come from one stepper (of format `version`) of `batch` clips started from nothing,
    fed the codes: the b clips in its first slots, dummy clips of code 0 (given top codes 0) in the rest, whose
    codes are coded nowhere. The floats of a clip's PMFs may depend on `batch` and on its slot (a batch of other
    size runs other matrix kernels), never on the caller. Mirrors `decode_group` step for step."""
    _check_group(prior, codes.shape[0], batch, condition)
    clips = codes.shape[0]
    symbols = _padded(codes.reshape(clips, -1), batch)  # (batch, n) int64, raster order
    positions, num_codes = symbols.shape[1], prior.config.num_codes
    encoders = [SequentialEncoder() for _ in range(clips)]
    nats = np.zeros(clips)
    pmfs: list[list[np.ndarray]] = [[] for _ in range(clips)]
    with pinned_computation():
        block = torch.empty(clips, _STEPS_PER_BLOCK, num_codes)  # (b, s, K) log-probabilities of a block of steps
        stepper = stepper_class(version)(prior, batch, condition=_padded(condition, batch))
        for start in range(0, positions, _STEPS_PER_BLOCK):
            steps = min(_STEPS_PER_BLOCK, positions - start)
            for step in range(steps):
                block[:, step] = stepper.step_log_probs()[:clips]  # (b, K)
                stepper.feed(symbols[:, start + step])
            coded = symbols[:clips, start:start + steps]  # (b, s)
            quantised = quantize_pmf(block[:, :steps].reshape(-1, num_codes)).reshape(clips, steps, -1)
            nats -= block[:, :steps].gather(2, coded[:, :, None]).double().sum(dim=(1, 2)).numpy()
            for clip, encoder in enumerate(encoders):
                encoder.encode_block(coded[clip].numpy(), quantised[clip])
                if keep_pmfs:
                    pmfs[clip].append(quantised[clip])
    return [EncodedLevel(encoder.finish(), float(nats[clip]) / math.log(2),
                         np.concatenate(pmfs[clip]) if keep_pmfs else None)
            for clip, encoder in enumerate(encoders)]


def encode_level(prior: PixelSNAIL, codes: Tensor, condition: Tensor | None, keep_pmfs: bool = False
                 ) -> EncodedLevel:
    """One chunk of mode "prior" as format version 2 coded it, a clip alone: codes (t, h, w), condition
    (1, t', h', w') or None. `encode_group` of one clip in a batch of 1."""
    return encode_group(prior, codes[None], condition, 1, keep_pmfs, version=2)[0]


class DecodedGroup(NamedTuple):
    codes: Tensor  # (b, t, h, w) int64; a clip whose stream failed holds 0 from where it failed
    errors: list[ValueError | None]  # per clip, why its stream does not decode under these PMFs, or None


def decode_group(prior: PixelSNAIL, chunks: list[bytes], condition: Tensor | None, batch: int,
                 version: int = FORMAT_VERSION) -> DecodedGroup:
    """Inverse of `encode_group`: the codes of b = len(chunks) clips, one stream each, from the same stepper
    of `batch` clips fed the decoded codes (and code 0 in the dummy slots). A stream that turns out invalid
    under its PMFs stops there, and its slot is fed code 0 onwards while the others go on: the network mixes
    nothing across clips, and any clip decoded wrong fails its checksum anyway."""
    _check_group(prior, len(chunks), batch, condition)
    clips, positions = len(chunks), math.prod(prior.config.shape)
    decoders: list[SequentialDecoder | None] = []
    errors: list[ValueError | None] = []
    for chunk in chunks:
        try:
            decoders.append(SequentialDecoder(chunk))
            errors.append(None)
        except ValueError as error:
            decoders.append(None)
            errors.append(error)
    decoded = np.zeros((batch, positions), dtype=np.int64)
    with pinned_computation():
        stepper = stepper_class(version)(prior, batch, condition=_padded(condition, batch))
        for position in range(positions):
            pmfs = quantize_pmf(stepper.step_log_probs()[:clips])  # (b, K)
            for clip, symbol in enumerate(decode_each(decoders, pmfs)):
                if isinstance(symbol, ValueError):
                    errors[clip], decoders[clip] = symbol, None
                elif symbol is not None:
                    decoded[clip, position] = symbol
            stepper.feed(torch.from_numpy(decoded[:, position]))
    return DecodedGroup(torch.from_numpy(decoded[:clips]).reshape(clips, *prior.config.shape), errors)


def decode_grid(prior: PixelSNAIL, decoder: SequentialDecoder, condition: Tensor | None) -> Tensor:
    """Decodes one clip's grid of codes, (1, t, h, w) int64, one position at a time from a stepper of batch 1
    fed each decoded code: the loop of format versions 1 and 2. Call it inside `pinned_computation`."""
    stepper = IncrementalStepper(prior, 1, condition=condition)
    for _ in range(math.prod(prior.config.shape)):
        pmf = quantize_pmf(stepper.step_log_probs())[0]  # (K,)
        stepper.feed(torch.tensor([decoder.decode(pmf)], dtype=torch.int64))
    return stepper.codes


def decode_clip_v1(priors: CodingPriors, data: bytes, bottom: bool = True) -> tuple[Tensor, Tensor | None]:
    """A format version 1 chunk of mode "prior": one stream of a clip's top then bottom codes. Returns top
    (1, t, h, w) and bottom (1, t', h', w') int64, or top and None without `bottom` (the rest is not read)."""
    decoder = SequentialDecoder(data)
    with pinned_computation():
        top = decode_grid(priors.top, decoder, None)
        return top, decode_grid(priors.bottom, decoder, top) if bottom else None


# --- mode "fixed" --------------------------------------------------------------------------------------------


def pack_level(codes: Tensor, num_codes: int) -> bytes:
    """One chunk of mode "fixed": codes of any shape, in C order, at ceil(log2 K) bits each."""
    return pack_fixed(codes.reshape(-1).numpy(), num_codes)


def unpack_level(data: bytes, shape: tuple[int, ...], num_codes: int) -> Tensor:
    """Inverse of `pack_level`: codes (1, *shape) int64. ValueError for a payload that cannot be these codes."""
    return torch.from_numpy(unpack_fixed(data, math.prod(shape), num_codes)).reshape(1, *shape)


def unpack_clip_v1(data: bytes, top_shape: tuple[int, int, int], bottom_shape: tuple[int, int, int],
                   num_codes: int) -> tuple[Tensor, Tensor]:
    """A format version 1 chunk of mode "fixed": a clip's top then bottom codes, (1, t, h, w) each."""
    sizes = [math.prod(top_shape), math.prod(bottom_shape)]
    flat = torch.from_numpy(unpack_fixed(data, sum(sizes), num_codes))  # (n_top + n_bottom,)
    top, bottom = flat.split(sizes)
    return top.reshape(1, *top_shape), bottom.reshape(1, *bottom_shape)


# --- the chunks of a file ---------------------------------------------------------------------------------------


class EncodedChunks(NamedTuple):
    chunks: list[bytes]  # the top chunk of every clip, then (with bottom codes) the bottom chunk of every clip
    checks: list[int]  # codes_checksum of each chunk's codes
    top_bits: float  # mode "prior": -log2 p of the top codes under the top prior; mode "fixed": packed bits
    bottom_bits: float  # the same for the bottom codes; 0 without them
    pmfs: list[list[np.ndarray]]  # per level, per clip, the PMFs coded (n, K), if asked for; else empty lists


def _groups(num_clips: int, batch: int) -> list[slice]:
    """The clips coded together: consecutive runs of `batch`, the last one shorter (and padded when coded)."""
    return [slice(start, min(start + batch, num_clips)) for start in range(0, num_clips, batch)]


def encode_chunks(priors: CodingPriors | None, top: Tensor, bottom: Tensor | None, num_codes: int, *,
                  coding_batch: int = 1, keep_pmfs: bool = False, progress: Progress | None = None
                  ) -> EncodedChunks:
    """The chunks of C clips' codes, top (C, t, h, w) and bottom (C, t', h', w') or None (levels "top"), in
    file order: under the priors (mode "prior"), `coding_batch` clips at a time (`encode_group`; the header
    must record it), or packed without them (priors None, mode "fixed")."""
    layers = [top] if bottom is None else [top, bottom]
    num_clips = top.shape[0]
    total = len(layers) * num_clips
    chunks, bits, pmfs = [], [0.0, 0.0], [[], []]
    checks = [codes_checksum(level_codes[i]) for level_codes in layers for i in range(num_clips)]
    for level, level_codes in enumerate(layers):
        for group in _groups(num_clips, 1 if priors is None else coding_batch):
            if priors is None:
                coded = [pack_level(level_codes[group][0], num_codes)]
                bits[level] += float(bits_per_code(num_codes) * level_codes[group].numel())
            else:
                condition = None if level == 0 else top[group]
                encoded = encode_group(priors[level], level_codes[group], condition, coding_batch,
                                       keep_pmfs=keep_pmfs)
                coded = [clip.data for clip in encoded]
                bits[level] += sum(clip.bits for clip in encoded)
                if keep_pmfs:
                    pmfs[level].extend(clip.pmfs for clip in encoded)
            for chunk in coded:
                chunks.append(chunk)
                if progress is not None:
                    progress(len(chunks), total)
    return EncodedChunks(chunks, checks, bits[0], bits[1], pmfs)


def decode_chunks(file: VQVFile, priors: CodingPriors | None, levels: Literal["top", "both"], name: str,
                  progress: Progress | None = None) -> tuple[Tensor, Tensor | None]:
    """Codes top (C, t, h, w) and, for levels "both", bottom (C, t', h', w') int64 of the file's chunks:
    under the priors (mode "prior"), the header's coding batch of clips at a time, or unpacked (priors None).
    The file must hold the levels asked for. Raises VQVFormatError naming the chunk, `DesyncError` where the
    decoded codes fail their checksum."""
    if file.header.version == 1:
        return _decode_v1(file.chunks, file.header, priors, levels, name, progress)
    return _decode_layers(file.chunks, file.checks, file.header, priors, levels, name, progress)


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
                   levels: str, name: str, progress: Progress | None) -> tuple[Tensor, Tensor | None]:
    """Format versions 2 to 4: the top layer's chunks, then, for levels "both", the bottom layer's, in groups
    of the header's coding batch (1 in version 2). Errors name the first clip of a group that fails."""
    num_clips = header.num_clips
    shapes = {"top": header.top_shape, "bottom": header.bottom_shape}
    decoded: dict[str, list[Tensor]] = {"top": [], "bottom": []}
    wanted = ("top",) if levels == "top" else ("top", "bottom")
    total = num_clips * len(wanted)
    top: Tensor | None = None  # (C, t, h, w), the top layer's codes once it is decoded: the bottom's condition
    for layer, level in enumerate(wanted):
        if level == "bottom":
            top = torch.cat(decoded["top"])
        for group in _groups(num_clips, 1 if priors is None else header.coding_batch):
            first = layer * num_clips + group.start  # the group's first chunk
            if priors is None:  # mode "fixed": one clip a group
                try:
                    codes = unpack_level(chunks[first], shapes[level], header.num_codes)  # (1, t, h, w)
                except ValueError as error:
                    where = _chunk_name(name, header, first, level, group.start)
                    raise VQVFormatError(f"{where}: {error}") from error
                errors: list[ValueError | None] = [None]
            else:
                condition = None if top is None else top[group]
                size = group.stop - group.start
                codes, errors = decode_group(getattr(priors, level), chunks[first:first + size], condition,
                                             header.coding_batch, header.version)
            for offset, error in enumerate(errors):
                clip, index = group.start + offset, first + offset
                where = _chunk_name(name, header, index, level, clip)
                if error is not None:
                    raise _desync(where, header, f"the stream does not decode ({error})") from error
                found = codes_checksum(codes[offset])
                if found != checks[index]:
                    raise _desync(where, header, f"the decoded codes' checksum is {found:#010x}, the encoder "
                                                 f"recorded {checks[index]:#010x}")
                decoded[level].append(codes[offset:offset + 1])
                if progress is not None:
                    progress(index + 1, total)
    if top is None:  # levels "top": the loop never reached the bottom layer
        top = torch.cat(decoded["top"])
    return top, torch.cat(decoded["bottom"]) if levels == "both" else None


def _decode_v1(chunks: list[bytes], header: VQVHeader, priors: CodingPriors | None, levels: str, name: str,
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
