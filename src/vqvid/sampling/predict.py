"""Future frames from context frames: encode the context, sample the codes after it, decode.

The thesis's experiment, ancestral sampling of a hierarchical VQ-VAE (VQ-VAE-2, Razavi et al. 2019,
arXiv 1906.00446, Sec. 3.2) continued in time: the first C frames of a clip are encoded; the top prior
p(top) samples the top codes of the frames after them; the bottom prior p(bottom | top) samples the bottom
codes after them given the whole top grid, part encoded, part sampled; the VQ-VAE decodes both levels.

The priors' grids have the fixed size of one clip (L frames; learned positional embeddings). Longer videos
slide that window over the codes: at least the last half of each window's codes becomes the context of the
next, which samples the rest, so 8 context frames can grow into 64 or 256. Sliding in code space keeps every
code the priors produced; nothing is decoded and re-encoded on the way.

With a context reader in the model folder (`vqvid.models.reader`, `vqvid train reader`), the top codes after the
context come from it instead of from the top prior: it reads the context's frames themselves, in which a shape's
place and speed are sharper than in their top codes. A window of a longer video gives it the last frames before
the window's sampled part, decoded from the codes so far. The bottom prior samples the bottom codes given its
top codes as it does given the top prior's.

The context is encoded alone (`encode_context`), never as part of the whole clip: the VQ-VAE's 3D convolutions
see neighbouring frames, so the codes of a whole clip already carry some of its future.

The frames are then anchored on the context (`anchor_on_context`, the default): where the decoding of a generated
frame has not changed since the last context frame, it gets back the VQ-VAE's error on that frame, which is
known, and which would otherwise recur in the frames after it (the detail of everything that stays where it was).
`warp_along_decoding` instead shows the last context frame moved as the decoding moves.

`continuation_scores` measures the top prior's part in code space alone: how near its continuation of held-out
codes comes to the true codes, against repeating the last context latent frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from vqvid.geometry import ClipGeometry, clip_geometry
from vqvid.metrics import code_agreement
from vqvid.models.pixelsnail import PixelSNAIL
from vqvid.models.vqvae import TIME_FACTOR, VQVAE, Codes
from vqvid.persistence import LoadedPrior, LoadedReader, ModelFolder
from vqvid.sampling.ancestral import sample


class PaddingCost(NamedTuple):
    """What encoding the context alone costs its own reconstruction, over the context frames of B clips."""

    whole_clip_psnr: float  # dB, context frames decoded from the codes of the whole clip
    padded_psnr: float  # dB, the same with the context's codes replaced by those of the padded context alone
    top_changed: float  # fraction of the context's top codes that differ between the two encodings
    bottom_changed: float  # the same for bottom codes


@dataclass
class Prediction:
    """What `predict` made from B clips, S samples each, F frames long, C of them context."""

    context: int  # C, frames encoded from the input; the F - C after them are generated
    top_from: tuple[str, ...]  # what sampled each window's top codes, in order: "reader" or "top prior"
    # (B, S, 3, F, H, W), unbounded: clamp to show. `anchor_on_context(decoded, ...)` ("last"),
    # `warp_along_decoding(decoded, ...)` ("warp") or `decoded` itself ("none")
    video: Tensor
    decoded: Tensor  # (B, S, 3, F, H, W) decoded from context and sampled codes alone
    anchor: str  # how `video` (and `generated_top`) are anchored on the last context frame: one of ANCHORS
    # (B, S, 3, F', H, W): the sampled top codes decoded with the input's own bottom codes (anchored like
    # `video`), over the F' <= F frames (a multiple of 4) that the input covers; shows how much the bottom level
    # carries. None when the input has fewer than 4 frames.
    generated_top: Tensor | None
    codes: Codes  # top (B, S, F/4, H/8, W/8), bottom (B, S, F/2, H/4, W/4); the first C/4, C/2 frames encoded
    positions: int  # code positions sampled, both levels, summed over all B × S sequences and windows
    seconds: float  # wall time spent sampling

    @property
    def positions_per_second(self) -> float:
        return self.positions / self.seconds

    @property
    def anchored(self) -> bool:
        """Whether `video` differs from `decoded`: anchored on the last context frame."""
        return self.anchor != "none"


def context_sizes(clip_frames: int) -> list[int]:
    """Context lengths that align with the top grid of L-frame clips: 0 (unconditional), 4, 8, ... below L."""
    return list(range(0, clip_frames, TIME_FACTOR))


def argument(name: str) -> str:
    """How the checks' messages name an argument: `context=` (a command names its options instead, `--context `)."""
    return f"{name}="


def check_context(context: int, clip_frames: int, named: Callable[[str], str] = argument) -> None:
    """Raise ValueError unless `context` frames end on a top-level latent frame, inside an L-frame clip; the
    message names the argument as `named` does."""
    sizes = context_sizes(clip_frames)
    if context not in sizes:
        raise ValueError(
            f"{named('context')}{context} frames does not fit {clip_frames}-frame clips: a top code covers "
            f"{TIME_FACTOR} frames and at least one must be left to sample; use one of {sizes}"
        )


def encode_context(vqvae: VQVAE, context_video: Tensor, clip_frames: int) -> Codes:
    """Codes of the context frames alone: top (B, C/4, H/8, W/8), bottom (B, C/2, H/4, W/4), int64.

    context_video (B, 3, C, H, W) in [-1, 1]. The encoder sees a whole L-frame clip, as in training: the
    context padded by repeating its last frame. Every code is therefore a function of the context only, and no
    frame after it can change them. With a causal encoder (`model.causal_encoder`) they are also the codes the
    whole clip gives, which the priors were trained on. C = 0 gives empty codes.
    """
    if context_video.dim() != 5:
        raise ValueError(f"context video must be (B, 3, C, H, W), got shape {tuple(context_video.shape)}")
    b, _, c, h, w = context_video.shape
    check_context(c, clip_frames)
    top_shape, bottom_shape = vqvae.grid_shapes(clip_frames, h, w)
    if c == 0:
        empty = lambda shape: torch.zeros((b, 0, *shape[1:]), dtype=torch.int64, device=context_video.device)
        return Codes(top=empty(top_shape), bottom=empty(bottom_shape))
    hold = repeat(context_video[:, :, -1], "b c h w -> b c t h w", t=clip_frames - c)
    codes = vqvae.encode(torch.cat([context_video, hold], dim=2))  # of the padded clip (B, 3, L, H, W)
    return Codes(top=codes.top[:, : c // TIME_FACTOR], bottom=codes.bottom[:, : c // 2])


@torch.no_grad()
def padding_cost(vqvae: VQVAE, clips: Tensor, context: int) -> PaddingCost:
    """How much worse the context frames of `clips` (B, 3, L, H, W) in [-1, 1] reconstruct when their codes
    come from the padded context (`encode_context`) instead of from the whole clip.

    Both reconstructions decode the whole clip's codes after the context, so the only difference is the
    context's own codes: what a prediction would lose if it sampled the true future codes exactly.
    """
    clip_frames = clips.shape[2]
    check_context(context, clip_frames)
    if context == 0:
        raise ValueError("context=0: there are no context frames to reconstruct")
    from vqvid.metrics import psnr

    whole = vqvae.encode(clips)
    alone = encode_context(vqvae, clips[:, :, :context], clip_frames)
    top_context, bottom_context = context // TIME_FACTOR, context // 2
    padded_top = torch.cat([alone.top, whole.top[:, top_context:]], dim=1)  # (B, L/4, H/8, W/8)
    padded_bottom = torch.cat([alone.bottom, whole.bottom[:, bottom_context:]], dim=1)  # (B, L/2, H/4, W/4)
    truth = clips[:, :, :context]
    return PaddingCost(
        whole_clip_psnr=psnr(vqvae.decode_codes(whole.top, whole.bottom)[:, :, :context], truth),
        padded_psnr=psnr(vqvae.decode_codes(padded_top, padded_bottom)[:, :, :context], truth),
        top_changed=(alone.top != whole.top[:, :top_context]).float().mean().item(),
        bottom_changed=(alone.bottom != whole.bottom[:, :bottom_context]).float().mean().item(),
    )


def _priors(model_folder: ModelFolder) -> tuple[LoadedPrior, LoadedPrior]:
    missing = [level for level in ("top", "bottom") if getattr(model_folder, level) is None]
    if missing:
        raise ValueError(f"model folder has no {' and no '.join(missing)} prior; prediction needs both "
                         "(`vqvid export --vqvae CKPT --top CKPT --bottom CKPT --out MODEL_DIR`)")
    top, bottom = model_folder.top, model_folder.bottom
    if bottom.config.condition_shape != top.config.shape:
        raise ValueError(f"model folder: the bottom prior is conditioned on top codes of shape "
                         f"{bottom.config.condition_shape}, but the top prior models {top.config.shape}")
    return top, bottom


def _reader(model_folder: ModelFolder, context: int, use: bool | None) -> LoadedReader | None:
    """The folder's context reader if prediction from `context` frames uses it: `use` None, when there is one
    that reads that many frames; True, always (refused if it cannot); False, never."""
    reader = model_folder.reader
    if use is False or (use is None and (reader is None or reader.config.context != context)):
        return None
    if reader is None:
        raise ValueError("the model folder has no context reader (`vqvid train reader`, then `vqvid export ... "
                         "--reader CKPT`)")
    if reader.config.context != context:
        raise ValueError(f"context={context}: the model folder's context reader reads {reader.config.context} "
                         "frames")
    return reader


def check_request(model_folder: ModelFolder, context: int, frames: int, samples: int = 1,
                  named: Callable[[str], str] = argument) -> ClipGeometry:
    """Raise ValueError unless the folder can make `frames` frames from `context` frames, `samples` times, with
    a message that names the arguments as `named` does; return the clip size its priors need (their grids are
    fixed in size: one sampling window)."""
    _priors(model_folder)
    geometry = clip_geometry(model_folder)
    t = geometry.top_shape[0]
    check_context(context, geometry.clip_frames, named)
    if frames <= context or frames % TIME_FACTOR:
        raise ValueError(f"{named('frames')}{frames}: expected a multiple of {TIME_FACTOR} larger than "
                         f"{named('context')}{context} (frames counts the context too)")
    if frames > geometry.clip_frames and t < 2:
        raise ValueError(f"{named('frames')}{frames}: longer than the model's {geometry.clip_frames}-frame clips, "
                         f"and a window of {t} top frame cannot slide; use frames <= {geometry.clip_frames}")
    if samples < 1:
        raise ValueError(f"{named('samples')}{samples}: expected at least 1")
    return geometry


class _Window(NamedTuple):
    """One placement of the priors' grid on the top codes: latent frames [start, end), sampled from
    `known` on."""

    start: int
    known: int
    end: int


def _windows(context_top: int, total_top: int, window_top: int) -> list[_Window]:
    """Windows covering `total_top` top frames after `context_top` given ones.

    The first window starts at 0. Each next window keeps at least the last half of the one before and ends
    half a window later, or at the last frame needed: a final window that would overrun keeps more context.
    """
    end = window_top
    windows = [_Window(0, context_top, end)]
    while end < total_top:
        known, end = end, min(end + window_top // 2, total_top)
        windows.append(_Window(end - window_top, known, end))
    return windows


# How much a pixel's decoding may change (mean absolute change over RGB in [-1, 1]) before the anchor lets go of
# it: the known error's weight is exp(-(change / ANCHOR_TOLERANCE)²), 0.37 at this change. Chosen on 16 held-out
# clips of the demo's generator, frames 8-15 from 0-7 (docs/prediction.md): mean of 8 samples 20.99 dB at 0.2,
# 20.97 at 0.3, 20.94 at 0.4, 20.85 at 0.1, and 20.78 with the error added everywhere; in 32-frame rollouts the
# gate keeps the anchor from degrading the frames after 16 (SSIM 0.587 against 0.509 ungated, 0.588 unanchored).
# Where the decoding is noisy it lets go of more: with priors of 800 steps or fewer, and for a model applied to
# video unlike its training data, adding the error everywhere (inf) scores higher (docs/prediction.md).
ANCHOR_TOLERANCE = 0.2

# How `predict` anchors the generated frames on the last context frame: that frame's known error added where the
# decoding stands still (`anchor_on_context`, the default), the frame moved along the decoding's motion
# (`warp_along_decoding`), or not at all. The warp scores higher on the demo's clips, but as much with priors
# trained 100 steps as with 3,200: its gain over copy-last is the blur of averaging jittered copies of the last
# frame, not what the priors learn (docs/prediction.md), so it is not the default.
ANCHORS = ("last", "warp", "none")
DEFAULT_ANCHOR = "last"
# The motion search of `warp_along_decoding`, per generated frame: displacements of up to WARP_RADIUS pixels each
# way (the demo's shapes move 1-3 pixels a frame at 64×64), matched over WARP_PATCH × WARP_PATCH pixels, each
# pixel of displacement costing WARP_PENALTY (mean absolute difference over RGB on [-1, 1]) so that where the
# decoding is flat or ambiguous nothing moves. Chosen on the demo's held-out clips (docs/prediction.md).
WARP_RADIUS, WARP_PATCH, WARP_PENALTY = 3, 5, 0.01


@torch.no_grad()
def predict(model_folder: ModelFolder, clips: Tensor, context: int, frames: int, samples: int = 1,
            temperature: float = 1.0, top_k: int | None = None, seed: int = 0, method: str = "fused",
            progress: bool = True, bottom_temperature: float | None = None, anchor: str = DEFAULT_ANCHOR,
            anchor_tolerance: float = ANCHOR_TOLERANCE, warp_radius: int = WARP_RADIUS,
            reader: bool | None = None, reader_temperature: float | None = None,
            reader_passes: int = 1) -> Prediction:
    """`frames` frames of video for each clip in `clips` (B, 3, T, H, W) in [-1, 1]: its first `context`
    frames encoded, the rest sampled `samples` times from the priors, all decoded. Runs on the device of the
    folder's models. Frames of `clips` after the context are used only for `Prediction.generated_top`.

    `temperature`, `top_k` and `method` are those of `vqvid.sampling.sample`; `bottom_temperature`, when given,
    replaces `temperature` for the bottom prior alone. One generator seeded with `seed` draws everything, so a
    seed gives the same prediction again on the same device. `anchor` anchors the frames after the context on
    its last frame: "last" (`anchor_on_context`, with `anchor_tolerance` as its tolerance), "warp"
    (`warp_along_decoding`, searching `warp_radius` pixels a frame) or "none"; when anchored, the context's own
    frames are the input's. `reader`: whether the folder's context reader, not the top prior, samples the top
    codes after the context (with the same temperature and top_k): None, when the folder has one that reads
    `context` frames; True, always; False, never. A window whose top codes it cannot cover (it predicts fewer
    latent frames than the window samples) falls back on the top prior. `reader_temperature`, when given,
    replaces `temperature` for the reader alone; 0 takes its most likely codes. With `reader_passes=2` the reader
    reads again for every latent frame of a window after the first it sampled: the frames just before that latent
    frame (the input's where it has them, the rest decoded from the codes of the first reading, bottom codes
    included), its codes for the next latent frame replacing the first reading's, and the bottom codes from that
    latent frame on drawn again given them (`bench_reader_passes.py`: on the demo's clips it keeps more of the
    shapes as themselves in the last frames, for a little PSNR).
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor={anchor!r}: expected one of {', '.join(ANCHORS)}")
    if reader_passes not in (1, 2):
        raise ValueError(f"reader_passes={reader_passes}: expected 1 or 2")
    top_prior, bottom_prior = _priors(model_folder)
    geometry = check_request(model_folder, context, frames, samples)
    read = _reader(model_folder, context, reader)
    vqvae = model_folder.vqvae.model
    if clips.dim() != 5 or clips.shape[1] != 3 or tuple(clips.shape[3:]) != (geometry.height, geometry.width):
        raise ValueError(f"clips must be (B, 3, T, {geometry.height}, {geometry.width}) for this model "
                         f"folder, got shape {tuple(clips.shape)}")
    if clips.shape[2] < context:
        raise ValueError(f"clips have {clips.shape[2]} frames, fewer than context={context}")
    device = next(vqvae.parameters()).device
    clips = clips.to(device)
    n_clips = clips.shape[0]
    window_top, height_top, width_top = top_prior.config.shape
    _, height_bottom, width_bottom = bottom_prior.config.shape
    total_top = frames // TIME_FACTOR
    windows = _windows(context // TIME_FACTOR, total_top, window_top)

    given = encode_context(vqvae, clips[:, :, :context], geometry.clip_frames)
    # Every grid the windows touch, with the context's codes in front; the rest is overwritten by sampling.
    grid_top = windows[-1].end
    top = torch.zeros(n_clips * samples, grid_top, height_top, width_top, dtype=torch.int64, device=device)
    bottom = torch.zeros(n_clips * samples, 2 * grid_top, height_bottom, width_bottom, dtype=torch.int64,
                         device=device)
    top[:, : given.top.shape[1]] = repeat(given.top, "b t h w -> (b s) t h w", s=samples)
    bottom[:, : given.bottom.shape[1]] = repeat(given.bottom, "b t h w -> (b s) t h w", s=samples)

    generator = torch.Generator(device).manual_seed(seed)
    options = dict(temperature=temperature, top_k=top_k, generator=generator, method=method,
                   progress=progress)
    bottom_options = options if bottom_temperature is None else {**options, "temperature": bottom_temperature}
    positions, seconds, top_from = 0, 0.0, []
    for i, window in enumerate(windows):
        begin = time.perf_counter()
        top_window = top[:, window.start : window.end]  # (B*S, L/4, H/8, W/8), a view
        top_start = (window.known - window.start) * height_top * width_top
        if read is not None and window.end - window.known <= read.config.predicted:
            if i == 0:  # the context's frames, read once per clip
                frames_read, per_clip = clips[:, :, :context], samples
            else:  # the frames before the window's sampled part, decoded from the codes so far
                frames_read, per_clip = _decoded_before(vqvae, top, bottom, window.known, read.config.known), 1
            read_options = dict(temperature=temperature if reader_temperature is None else reader_temperature,
                                top_k=top_k, generator=generator)
            drawn = read.model.sample_codes(frames_read, samples=per_clip, **read_options)
            top[:, window.known : window.end] = drawn[:, : window.end - window.known]
            top_from.append("reader")
        else:
            top_window.copy_(sample(top_prior.model, top_window, start=top_start, **options))
            top_from.append("top prior")
        bottom_window = bottom[:, 2 * window.start : 2 * window.end]  # (B*S, L/2, H/4, W/4), a view
        bottom_start = 2 * (window.known - window.start) * height_bottom * width_bottom
        bottom_window.copy_(sample(bottom_prior.model, bottom_window, condition=top_window,
                                   start=bottom_start, **bottom_options))
        if top_from[-1] == "reader" and reader_passes == 2:
            for latent in range(window.known + 1, window.end):  # read again, and draw the bottom codes again
                first = TIME_FACTOR * (latent - read.config.known)  # the frames read: [first, 4 × latent)
                decoded = _decoded(vqvae, top_window, bottom_window).clamp(-1, 1)  # the whole window
                frames_read = decoded[:, :, first - TIME_FACTOR * window.start : TIME_FACTOR * (latent - window.start)]
                given = min(context - first, frames_read.shape[2])
                if given > 0:  # the input's own frames where it has them
                    frames_read[:, :, :given] = repeat(clips[:, :, context - given : context],
                                                       "b ... -> (b s) ...", s=samples)
                top[:, latent] = read.model.sample_codes(frames_read, **read_options)[:, 0]
                redraw = 2 * (latent - window.start) * height_bottom * width_bottom
                bottom_window.copy_(sample(bottom_prior.model, bottom_window, condition=top_window, start=redraw,
                                           **bottom_options))
                positions += top_window.shape[0] * (height_top * width_top + bottom_window[0].numel() - redraw)
        if device.type == "cuda":  # kernels run asynchronously: wait for them before reading the clock
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - begin
        positions += top_window.shape[0] * (top_window[0].numel() - top_start + bottom_window[0].numel()
                                            - bottom_start)
    top, bottom = top[:, :total_top], bottom[:, : 2 * total_top]

    truth_frames = min(clips.shape[2], frames) // TIME_FACTOR * TIME_FACTOR
    generated_top = None
    if truth_frames:
        truth_bottom = vqvae.encode(clips[:, :, :truth_frames]).bottom  # (B, F'/2, H/4, W/4)
        truth_bottom = repeat(truth_bottom, "b t h w -> (b s) t h w", s=samples)
        generated_top = _decode(vqvae, top[:, : truth_frames // TIME_FACTOR], truth_bottom, samples)
    per_clip = lambda codes: rearrange(codes, "(b s) t h w -> b s t h w", s=samples)
    decoded = _decode(vqvae, top, bottom, samples)
    anchor = anchor if context > 0 else "none"
    anchored_on = {"warp": partial(warp_along_decoding, clips=clips, context=context, radius=warp_radius),
                   "last": partial(anchor_on_context, clips=clips, context=context, tolerance=anchor_tolerance),
                   "none": lambda video: video}[anchor]
    if generated_top is not None:
        generated_top = anchored_on(generated_top)
    return Prediction(
        context=context,
        top_from=tuple(top_from),
        video=anchored_on(decoded),
        decoded=decoded,
        anchor=anchor,
        generated_top=generated_top,
        codes=Codes(top=per_clip(top), bottom=per_clip(bottom)),
        positions=positions,
        seconds=seconds,
    )


def _decoded_before(vqvae: VQVAE, top: Tensor, bottom: Tensor, end: int, latent_frames: int) -> Tensor:
    """The frames (N, 3, 4 × latent_frames, H, W) of top latent frames [end - latent_frames, end) of every
    sequence of codes top (N, T', H/8, W/8) and bottom (N, 2T', H/4, W/4), decoded from those codes alone."""
    start = end - latent_frames
    return _decoded(vqvae, top[:, start:end], bottom[:, 2 * start : 2 * end]).clamp(-1, 1)


def _decoded(vqvae: VQVAE, top: Tensor, bottom: Tensor, per_piece: int = 8) -> Tensor:
    """Codes top (N, T', H/8, W/8) and bottom (N, 2T', H/4, W/4) decoded `per_piece` sequences at a time:
    (N, 3, 4T', H, W), unbounded."""
    pieces = zip(top.split(per_piece), bottom.split(per_piece), strict=True)
    return torch.cat([vqvae.decode_codes(t, b) for t, b in pieces])


def anchor_on_context(decoded: Tensor, clips: Tensor, context: int, tolerance: float = ANCHOR_TOLERANCE) -> Tensor:
    """Decoded predictions (B, S, 3, F, H, W) anchored on the given frames of `clips` (B, 3, T >= C, H, W):
    the first C = `context` frames become the clips' own, and every frame t >= C becomes the decoding plus the
    known error of the last context frame where the decoding has not changed since it:
    d[t] + w * (x[C-1] - d[C-1]), w = exp(-(|d[t] - d[C-1]| / tolerance)²) per pixel (|.| the mean over RGB).
    Where nothing changes that is x[C-1] + d[t] - d[C-1], the last context frame plus the change the decoding
    shows; `tolerance=math.inf` makes w = 1 everywhere.

    The codes decode every frame with the VQ-VAE's reconstruction error. On the last context frame that error is
    known, and in a frame after it the error of whatever has not moved is nearly the same, so adding back the
    known error recovers that detail, while the codes still say what moves. Where the decoding changes, the
    content has moved or changed and the old error would land out of place, so the gate lets go of it. The same
    idea as the skip connections from the last seen frame in SVG (Denton & Fergus 2018, arXiv 1802.07687), with
    nothing to learn. `vqvid predict --anchor none` turns it off.
    """
    given = _given_frames(decoded, clips, context)
    if not tolerance > 0:
        raise ValueError(f"tolerance={tolerance}: expected a positive change (inf: no gate)")
    last = decoded[:, :, :, context - 1 : context]  # (B, S, 3, 1, H, W)
    known_error = given[:, :, :, -1:] - last
    future = decoded[:, :, :, context:]
    change = (future - last).abs().mean(2, keepdim=True)  # (B, S, 1, F - C, H, W)
    weight = torch.exp(-(change / tolerance).square())  # exactly 1 where nothing changes, and everywhere at inf
    return torch.cat([given, future + weight * known_error], dim=3)


def warp_along_decoding(decoded: Tensor, clips: Tensor, context: int, radius: int = WARP_RADIUS,
                        patch: int = WARP_PATCH, penalty: float = WARP_PENALTY) -> Tensor:
    """Decoded predictions (B, S, 3, F, H, W) turned into the last given frame of `clips` (B, 3, T >= C, H, W)
    moved as the decoding moves: the first C = `context` frames become the clips' own, and every frame t >= C is
    x[C-1] displaced, pixel by pixel, by the motion the decoding shows from frame C-1 to t.

    The motion is found one frame at a time (`block_motion`, up to `radius` pixels each way), and chained: a pixel
    of frame t came from p + v in frame t-1, which came from wherever that point of frame t-1 came from in frame
    C-1. The codes say where things go; the given frame says what they look like, sharp and with the detail the
    codes lose. Where the decoding stands still this is the last context frame. A fixed form of the video
    predictors that move the last seen frame's pixels instead of drawing new ones (Deep Voxel Flow, Liu et al.
    2017, arXiv 1702.02463; SDC-Net, Reda et al. 2018, arXiv 1804.00008), with the motion read off the decoded
    samples and nothing to learn. It cannot draw what the last context frame does not show (what a moving shape
    uncovers, what comes into view), which `anchor_on_context` can.
    """
    given = _given_frames(decoded, clips, context)
    b, s, _, t, h, w = decoded.shape
    frames = decoded.flatten(0, 1)  # (B*S, 3, F, H, W)
    last = given[:, :, :, -1].flatten(0, 1)  # (B*S, 3, H, W)
    source = torch.zeros(b * s, 2, h, w, dtype=torch.int64, device=decoded.device)  # (dy, dx) into frame C-1
    moved = []
    for f in range(context, t):
        step = block_motion(frames[:, :, f], frames[:, :, f - 1], radius, patch, penalty)
        source = step + displaced(source, step)
        moved.append(displaced(last, source))
    if not moved:
        return given
    return torch.cat([given, rearrange(torch.stack(moved, 2), "(b s) c f h w -> b s c f h w", s=s)], dim=3)


def _given_frames(decoded: Tensor, clips: Tensor, context: int) -> Tensor:
    """The first `context` frames of `clips` (B, 3, T, H, W) as the anchored predictions show them, one copy per
    sample of `decoded` (B, S, 3, F, H, W): (B, S, 3, C, H, W)."""
    if not 0 < context <= min(clips.shape[2], decoded.shape[3]):
        raise ValueError(f"context={context}: expected 1 to {min(clips.shape[2], decoded.shape[3])} frames "
                         "known in both the clips and the decoding")
    return clips[:, None, :, :context].to(decoded).expand(-1, decoded.shape[1], -1, -1, -1, -1)


def block_motion(current: Tensor, previous: Tensor, radius: int, patch: int, penalty: float) -> Tensor:
    """Where each pixel of `current` (N, C, H, W) came from in `previous`: the integer displacement v, |v_y| and
    |v_x| up to `radius`, that minimises the mean absolute difference between the `patch` × `patch` square around
    the pixel and the square around p + v in `previous` (edges repeated), plus `penalty` per pixel of |v|.
    Ties go to the shorter displacement. Returns (N, 2, H, W) int64: dy, dx."""
    if radius < 0 or patch < 1 or patch % 2 == 0:
        raise ValueError(f"radius={radius}, patch={patch}: expected radius >= 0 and an odd patch")
    n, _, h, w = current.shape
    padded = F.pad(previous, (radius,) * 4, mode="replicate")
    offsets = sorted(((dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)),
                     key=lambda v: (v[0] ** 2 + v[1] ** 2, v))  # shortest first: strict `<` keeps it on ties
    best = torch.full((n, h, w), torch.inf, device=current.device)
    source = torch.zeros(n, 2, h, w, dtype=torch.int64, device=current.device)
    for dy, dx in offsets:
        shifted = padded[..., radius + dy : radius + dy + h, radius + dx : radius + dx + w]
        difference = (current - shifted).abs().mean(1, keepdim=True)
        cost = F.avg_pool2d(difference, patch, stride=1, padding=patch // 2, count_include_pad=False)[:, 0]
        cost = cost + penalty * (dy * dy + dx * dx) ** 0.5
        better = cost < best
        best = torch.where(better, cost, best)
        source[:, 0].masked_fill_(better, dy)
        source[:, 1].masked_fill_(better, dx)
    return source


def displaced(image: Tensor, source: Tensor) -> Tensor:
    """`image` (N, C, H, W) read at p + source[n, :, p] for every pixel p: source (N, 2, H, W) integer (dy, dx),
    positions outside the frame clamped to its edge."""
    n, c, h, w = image.shape
    rows = (torch.arange(h, device=image.device)[:, None] + source[:, 0]).clamp(0, h - 1)
    columns = (torch.arange(w, device=image.device)[None, :] + source[:, 1]).clamp(0, w - 1)
    index = (rows * w + columns).flatten(1)[:, None].expand(-1, c, -1)
    return image.flatten(2).gather(2, index).view(n, c, h, w)


def _decode(vqvae: VQVAE, top: Tensor, bottom: Tensor, samples: int) -> Tensor:
    """(B*S, F/4, H/8, W/8) and (B*S, F/2, H/4, W/4) codes -> (B, S, 3, F, H, W), one sequence at a time: the
    activations of a long rollout's whole batch would not fit in memory."""
    return rearrange(_decoded(vqvae, top, bottom, per_piece=1), "(b s) c t h w -> b s c t h w", s=samples)


def continuation_scores(prior: PixelSNAIL, codes: Tensor, codebook: Tensor, context: int, *,
                        temperature: float = 1.0, top_k: int | None = None,
                        generator: torch.Generator | None = None) -> dict[str, dict[str, list[float]]]:
    """How near an unconditional prior continues held-out codes (N, T, H, W) from their first `context` latent
    frames, in code space: for each later latent frame, the mean squared distance between the codebook vectors
    (`codebook` (K, D)) of the produced and the true codes (0 when equal; near-synonymous codes count as near),
    and the share of positions with exactly the true code. Rows:

    - "repeat": the last context latent frame repeated, the code-space copy-last (the line to beat);
    - "sampled": the prior run free from the context in raster order, as prediction runs it (temperature, top_k);
    - "teacher_forced": the prior's most likely code at each position given the true codes before it, its own
      latent frame's included, which prediction never has (what its bits per code measure);
    - "another_clip": each clip's frames from the next clip (chance).
    The prior must be in eval mode. Codes of whole clips carry a little of their future (`encode_context`)."""
    if not 1 <= context < codes.shape[1]:
        raise ValueError(f"context={context}: expected 1 to {codes.shape[1] - 1} latent frames")
    truth = codes[:, context:]
    start = context * codes.shape[2] * codes.shape[3]  # flat positions of the context
    with torch.inference_mode():
        _, most_likely = prior.score(codes)
    produced = {
        "repeat": codes[:, context - 1 : context].expand_as(truth),
        "sampled": sample(prior, codes.clone(), start=start, temperature=temperature, top_k=top_k,
                          generator=generator)[:, context:],
        "teacher_forced": most_likely[:, context:],
        "another_clip": truth.roll(1, 0),
    }
    return {name: code_agreement(codes_, truth, codebook) for name, codes_ in produced.items()}
