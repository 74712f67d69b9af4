"""Future frames from context frames: encode the context, sample the codes after it, decode.

The thesis's experiment, ancestral sampling of a hierarchical VQ-VAE (VQ-VAE-2, Razavi et al. 2019,
arXiv 1906.00446, Sec. 3.2) continued in time: the first C frames of a clip are encoded; the top prior
p(top) samples the top codes of the frames after them; the bottom prior p(bottom | top) samples the bottom
codes after them given the whole top grid, part encoded, part sampled; the VQ-VAE decodes both levels.

The priors' grids have the fixed size of one clip (L frames; learned positional embeddings). Longer videos
slide that window over the codes: at least the last half of each window's codes becomes the context of the
next, which samples the rest, so 8 context frames can grow into 64 or 256. Sliding in code space keeps every
code the priors produced; nothing is decoded and re-encoded on the way.

The context is encoded alone (`encode_context`), never as part of the whole clip: the VQ-VAE's 3D convolutions
see neighbouring frames, so the codes of a whole clip already carry some of its future.

The frames are then anchored on the context (`anchor_on_context`, the default): where the decoding of a generated
frame has not changed since the last context frame, it gets back the VQ-VAE's error on that frame, which is
known, and which would otherwise recur in the frames after it (the detail of everything that stays where it was).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
from einops import rearrange, repeat
from torch import Tensor

from vqvid.geometry import ClipGeometry, clip_geometry
from vqvid.models.vqvae import TIME_FACTOR, VQVAE, Codes
from vqvid.persistence import LoadedPrior, ModelFolder
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
    # (B, S, 3, F, H, W), unbounded: clamp to show. Anchored: `anchor_on_context(decoded, ...)`, else `decoded`
    video: Tensor
    decoded: Tensor  # (B, S, 3, F, H, W) decoded from context and sampled codes alone
    anchored: bool  # whether `video` (and `generated_top`) are anchored on the last context frame
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


def context_sizes(clip_frames: int) -> list[int]:
    """Context lengths that align with the top grid of L-frame clips: 0 (unconditional), 4, 8, ... below L."""
    return list(range(0, clip_frames, TIME_FACTOR))


def check_context(context: int, clip_frames: int) -> None:
    """Raise ValueError unless `context` frames end on a top-level latent frame, inside an L-frame clip."""
    sizes = context_sizes(clip_frames)
    if context not in sizes:
        raise ValueError(
            f"context={context} frames does not fit {clip_frames}-frame clips: a top code covers "
            f"{TIME_FACTOR} frames and at least one must be left to sample; use one of {sizes}"
        )


def encode_context(vqvae: VQVAE, context_video: Tensor, clip_frames: int) -> Codes:
    """Codes of the context frames alone: top (B, C/4, H/8, W/8), bottom (B, C/2, H/4, W/4), int64.

    context_video (B, 3, C, H, W) in [-1, 1]. The encoder sees a whole L-frame clip, as in training: the
    context padded by repeating its last frame. Every code is therefore a function of the context only, and no
    frame after it can change them. C = 0 gives empty codes.
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


def check_request(model_folder: ModelFolder, context: int, frames: int, samples: int = 1) -> ClipGeometry:
    """Raise ValueError unless the folder can make `frames` frames from `context` frames, `samples` times;
    return the clip size its priors need (their grids are fixed in size: one sampling window)."""
    _priors(model_folder)
    geometry = clip_geometry(model_folder)
    t = geometry.top_shape[0]
    check_context(context, geometry.clip_frames)
    if frames <= context or frames % TIME_FACTOR:
        raise ValueError(f"frames={frames}: expected a multiple of {TIME_FACTOR} larger than "
                         f"context={context} (frames counts the context too)")
    if frames > geometry.clip_frames and t < 2:
        raise ValueError(f"frames={frames}: longer than the model's {geometry.clip_frames}-frame clips, and "
                         f"a window of {t} top frame cannot slide; use frames <= {geometry.clip_frames}")
    if samples < 1:
        raise ValueError(f"samples={samples}: expected at least 1")
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


@torch.no_grad()
def predict(model_folder: ModelFolder, clips: Tensor, context: int, frames: int, samples: int = 1,
            temperature: float = 1.0, top_k: int | None = None, seed: int = 0, method: str = "fused",
            progress: bool = True, bottom_temperature: float | None = None, anchor: bool = True,
            anchor_tolerance: float = ANCHOR_TOLERANCE) -> Prediction:
    """`frames` frames of video for each clip in `clips` (B, 3, T, H, W) in [-1, 1]: its first `context`
    frames encoded, the rest sampled `samples` times from the priors, all decoded. Runs on the device of the
    folder's models. Frames of `clips` after the context are used only for `Prediction.generated_top`.

    `temperature`, `top_k` and `method` are those of `vqvid.sampling.sample`; `bottom_temperature`, when given,
    replaces `temperature` for the bottom prior alone. One generator seeded with `seed` draws everything, so a
    seed gives the same prediction again on the same device. `anchor` anchors the frames after the context on
    its last frame (`anchor_on_context`, with `anchor_tolerance` as its tolerance); the context's own frames are
    then the input's.
    """
    top_prior, bottom_prior = _priors(model_folder)
    geometry = check_request(model_folder, context, frames, samples)
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
    positions, seconds = 0, 0.0
    for window in windows:
        begin = time.perf_counter()
        top_window = top[:, window.start : window.end]  # (B*S, L/4, H/8, W/8), a view
        top_start = (window.known - window.start) * height_top * width_top
        top_window.copy_(sample(top_prior.model, top_window, start=top_start, **options))
        bottom_window = bottom[:, 2 * window.start : 2 * window.end]  # (B*S, L/2, H/4, W/4), a view
        bottom_start = 2 * (window.known - window.start) * height_bottom * width_bottom
        bottom_window.copy_(sample(bottom_prior.model, bottom_window, condition=top_window,
                                   start=bottom_start, **bottom_options))
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
    anchored = anchor and context > 0
    anchored_on = partial(anchor_on_context, clips=clips, context=context, tolerance=anchor_tolerance)
    if anchored and generated_top is not None:
        generated_top = anchored_on(generated_top)
    return Prediction(
        context=context,
        video=anchored_on(decoded) if anchored else decoded,
        decoded=decoded,
        anchored=anchored,
        generated_top=generated_top,
        codes=Codes(top=per_clip(top), bottom=per_clip(bottom)),
        positions=positions,
        seconds=seconds,
    )


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
    if not 0 < context <= min(clips.shape[2], decoded.shape[3]):
        raise ValueError(f"context={context}: expected 1 to {min(clips.shape[2], decoded.shape[3])} frames "
                         "known in both the clips and the decoding")
    if not tolerance > 0:
        raise ValueError(f"tolerance={tolerance}: expected a positive change (inf: no gate)")
    given = clips[:, None, :, :context].to(decoded).expand(-1, decoded.shape[1], -1, -1, -1, -1)
    last = decoded[:, :, :, context - 1 : context]  # (B, S, 3, 1, H, W)
    known_error = given[:, :, :, -1:] - last
    future = decoded[:, :, :, context:]
    change = (future - last).abs().mean(2, keepdim=True)  # (B, S, 1, F - C, H, W)
    weight = torch.exp(-(change / tolerance).square())  # exactly 1 where nothing changes, and everywhere at inf
    return torch.cat([given, future + weight * known_error], dim=3)


def _decode(vqvae: VQVAE, top: Tensor, bottom: Tensor, samples: int) -> Tensor:
    """(B*S, F/4, H/8, W/8) and (B*S, F/2, H/4, W/4) codes -> (B, S, 3, F, H, W), one sequence at a time: the
    activations of a long rollout's whole batch would not fit in memory."""
    videos = [vqvae.decode_codes(t, b) for t, b in zip(top.split(1), bottom.split(1), strict=True)]
    return rearrange(torch.cat(videos), "(b s) c t h w -> b s c t h w", s=samples)
