"""PixelSNAIL priors over 3D grids of codes: causal convolutions and causal self-attention.

PixelSNAIL (Chen et al. 2017, arXiv 1712.09763) interleaves gated residual convolutions with causal
self-attention. Here it runs over codes on a (time, row, column) grid, in raster order: all of frame t before
frame t+1, row by row within a frame. A position's distribution may depend only on the positions before it.

Plain masked 3D convolutions, as in the original PixelCNN, leave a blind spot: stacked, they never reach the
positions up and to the right of the current one. As in the gated PixelCNN (van den Oord et al. 2016,
arXiv 1606.05328) we run separate causal streams instead, one per axis, each strictly causal at its own level:

- the *frame* stream at frame t sees frames < t (whole frames, within its spatial receptive field);
- the *vertical* stream at (t, h) sees rows < h of frame t, and the frame stream at t;
- the *horizontal* stream at (t, h, w) sees columns < w of row (t, h), and the vertical stream at (t, h).

Together they cover every earlier position. The split also makes sampling cheap (Ramachandran et al. 2017,
arXiv 1704.06001): the frame stream is computed once per new frame, the vertical stream once per new row, and
only the horizontal stream and attention once per position; see `vqvid.sampling`.

An optional copy head (`copy_head`) mixes the softmax with a pointer over the codes of the previous latent
frame's 3×3 neighbourhood of each position: a pointer-generator (See et al. 2017, arXiv 1704.04368; pointer
networks, Vinyals et al. 2015) in time, so that "this content moved one code over" is one learned choice
rather than a code to reproduce through every layer. It reads only codes of frame t - 1, all earlier.

The bottom prior p(bottom | top) adds a conditioning stack that embeds the top codes, mixes them with
non-causal residual blocks and upsamples them ×2 in (t, h, w) onto the bottom grid; every gated block sees it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

Shape3 = tuple[int, int, int]


@dataclass
class PixelSNAILConfig:
    num_codes: int = 512  # K, the codebook size of the level this prior models
    shape: Shape3 = (4, 32, 32)  # (T, H, W) of the code grid; learned positional embeddings are this size
    channels: int = 256  # width of every causal stream
    n_blocks: int = 6  # blocks of (residual layers on each stream, then attention)
    n_res_blocks: int = 1  # gated residual layers per stream in each block
    kernel_size: int = 3  # odd: centred taps on the non-causal axes, kernel_size // 2 + 1 on the causal one
    attention: bool = True  # causal self-attention after each block: reaches every earlier position
    n_heads: int = 1  # attention heads; key_channels and value_channels are split between them
    key_channels: int = 16  # PixelSNAIL's key width: keys only rank positions, so they can be narrow
    value_channels: int = 128  # what attention carries back into the horizontal stream
    dropout: float = 0.1  # in the residual layers, training only (on attention weights it would cost O(N²))
    embed_dim: int = 32  # codes enter as learned embeddings of this width, not K-channel one-hot
    condition_num_codes: int | None = None  # K of the conditioning (top) codes; None: unconditional prior
    condition_shape: Shape3 | None = None  # (T, H, W) of the conditioning grid: exactly half of `shape`
    condition_channels: int = 128  # width of the conditioning stack
    n_cond_res_blocks: int = 2  # residual blocks on the condition; each widens its reach by 2 top positions
    # Start the code embeddings (and the condition's) from the VQ-VAE's codebooks when the code store holds
    # them: neighbouring codes then start as neighbours, which the prior otherwise has to learn from data.
    codebook_init: bool = True
    # Logits as dot products of a projection of the features with the code embeddings (tied to the input's, as
    # in language models: Press & Wolf 2017, arXiv 1608.05859) rather than a separate weight per code: codes
    # whose embeddings are near get similar probabilities, which the untied head has to learn code by code.
    tied_head: bool = False
    # Mix the softmax with a copy of one of the 9 codes around the same place in the previous latent frame,
    # chosen by a learned pointer, with a learned weight (`CopyHead`); frame 0 has nothing to copy.
    copy_head: bool = False
    # Normalise the conditioning stack's features (GroupNorm, one group) before each of its activations. Without
    # it, the demo's bottom prior at seed 0 drove them to -55 on average, where the ELUs are flat: its output
    # was the same for every top grid, and the prior gained nothing from the top codes (`ConditionStack`).
    condition_norm: bool = False

    def __post_init__(self) -> None:
        self.shape = tuple(self.shape)
        if self.condition_shape is not None:
            self.condition_shape = tuple(self.condition_shape)
        positive = ("num_codes", "channels", "n_blocks", "n_res_blocks", "kernel_size", "n_heads",
                    "key_channels", "value_channels", "embed_dim", "condition_channels")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"PixelSNAILConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_cond_res_blocks < 0:
            raise ValueError(f"PixelSNAILConfig.n_cond_res_blocks must be >= 0, got {self.n_cond_res_blocks}")
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"PixelSNAILConfig.shape must be three positive sizes (T, H, W), "
                             f"got {self.shape}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"PixelSNAILConfig.kernel_size must be odd, got {self.kernel_size}")
        for name in ("key_channels", "value_channels"):
            if getattr(self, name) % self.n_heads:
                raise ValueError(f"PixelSNAILConfig.{name}={getattr(self, name)} is not divisible by "
                                 f"n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"PixelSNAILConfig.dropout must be in [0, 1), got {self.dropout}")
        if (self.condition_num_codes is None) != (self.condition_shape is None):
            raise ValueError("PixelSNAILConfig.condition_num_codes and condition_shape must be given "
                             f"together (got {self.condition_num_codes} and {self.condition_shape})")
        if self.condition_shape is not None:
            if self.condition_num_codes < 1:
                raise ValueError(f"PixelSNAILConfig.condition_num_codes must be >= 1, "
                                 f"got {self.condition_num_codes}")
            if len(self.condition_shape) != 3 or tuple(2 * s for s in self.condition_shape) != self.shape:
                raise ValueError(f"PixelSNAILConfig.condition_shape must be half of shape={self.shape} in "
                                 f"every axis, got {self.condition_shape}")

    @property
    def conditional(self) -> bool:
        return self.condition_shape is not None


ConvApply = Callable[["CausalConv3d", Tensor], Tensor]


def _apply_full(conv: CausalConv3d, x: Tensor) -> Tensor:
    return conv(x)


class CausalConv3d(nn.Module):
    """A 3D convolution that is causal along one axis of (T, H, W): `axis` 0 (time), 1 (rows) or 2 (columns).

    The kernel has 1 tap on the axes before `axis` (the output stays in its own frame / row),
    kernel_size // 2 + 1 taps on `axis` ending at the output's own index (or, when `strict`, just before
    it), and kernel_size centred taps on the axes after `axis`, which are not ordered relative to it.
    """

    def __init__(self, in_channels: int, out_channels: int, axis: int, kernel_size: int,
                 strict: bool = False):
        super().__init__()
        self.axis = axis
        self.strict = strict
        self.taps = kernel_size // 2 + 1
        kernel = (1,) * axis + (self.taps,) + (kernel_size,) * (2 - axis)
        padding = (0,) * (axis + 1) + (kernel_size // 2,) * (2 - axis)
        # Holds the weights; the causal padding is added in `forward` (or read from a cache when sampling).
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, padding=padding)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, T, H, W) -> (B, C_out, T, H, W)
        dim = 2 + self.axis
        # F.pad lists (before, after) pairs from the last dimension backwards.
        x = F.pad(x, (0, 0) * (2 - self.axis) + (self.taps - 1 + self.strict, 0))
        if self.strict:  # shift by one: the output at i reads inputs i - taps .. i - 1
            x = x.narrow(dim, 0, x.shape[dim] - 1)
        return self.conv(x)


class Pointwise(nn.Linear):
    """A 1×1×1 convolution as a linear map of the channel axis: (B, C_in, ...) -> (B, C_out, ...). Unlike
    nn.Conv3d it stays one small matrix product when sampling applies it to a single position."""

    def forward(self, x: Tensor) -> Tensor:
        return self.channels_last(x).movedim(-1, 1)

    def channels_last(self, x: Tensor) -> Tensor:  # (B, C_in, ...) -> (B, ..., C_out), contiguous
        return super().forward(x.movedim(1, -1))


class GatedResidual(nn.Module):
    """x + a * sigmoid(b): PixelCNN++'s gated residual layer, causal along one axis.

    `aux` is another stream at the same positions (strictly causal already, so any of its positions in reach
    may be mixed in); `background` holds position embeddings and the condition, and is not ordered at all.
    """

    def __init__(self, channels: int, axis: int, kernel_size: int, aux: bool, dropout: float):
        super().__init__()
        self.conv_in = CausalConv3d(channels, channels, axis, kernel_size)
        self.aux_in = Pointwise(channels, channels) if aux else None
        self.dropout = nn.Dropout(dropout)
        self.conv_out = CausalConv3d(channels, 2 * channels, axis, kernel_size)
        self.background_in = Pointwise(channels, 2 * channels)

    def forward(self, x: Tensor, background: Tensor, aux: Tensor | None = None,
                apply: ConvApply = _apply_full) -> Tensor:
        """x, aux (B, C, ...), background (B or 1, C, ...) -> (B, C, ...).

        `apply(conv, input)` runs a causal convolution; the incremental sampler passes one that reads earlier
        inputs from its cache, so that x may be any box of the grid rather than all of it.
        """
        hidden = apply(self.conv_in, F.elu(x))
        if self.aux_in is not None:
            hidden = hidden + self.aux_in(F.elu(aux))
        hidden = apply(self.conv_out, self.dropout(F.elu(hidden)))  # (B, 2C, ...)
        value, gate = (hidden + self.background_in(background)).chunk(2, dim=1)
        return x + value * torch.sigmoid(gate)


def reference_causal_attention(queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Causal attention through an explicit masked (N, N) score matrix, for comparison with
    `scaled_dot_product_attention` in tests and benchmarks: (B, heads, N, d) -> (B, heads, N, d_v)."""
    scores = queries @ keys.transpose(-1, -2) / math.sqrt(queries.shape[-1])  # (B, heads, N, N)
    n = scores.shape[-1]
    future = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1) @ values


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention over the flattened (t h w) sequence: position p attends to positions < p.

    Queries come from the horizontal stream at p; keys and values from the stream and the input embedding at
    earlier positions (PixelSNAIL, Sec. 3). The input embedding at q may be used only by positions after q, so
    keys and values are shifted one position later, a learned start vector takes slot 0, and slot p (position
    p - 1) is the last one that query p may read: an ordinary `is_causal` mask.
    """

    def __init__(self, channels: int, embed_dim: int, key_channels: int, value_channels: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.key_channels = key_channels
        self.value_channels = value_channels
        self.query = nn.Linear(channels, key_channels)
        self.key_value = nn.Linear(channels + embed_dim, key_channels + value_channels)
        self.start = nn.Parameter(torch.randn(key_channels + value_channels) / math.sqrt(key_channels))
        self.out = nn.Linear(value_channels, channels)
        # Swappable for `reference_causal_attention` when comparing implementations.
        self.causal_attention: Callable[[Tensor, Tensor, Tensor], Tensor] = self._sdpa_causal

    def _heads(self, x: Tensor) -> Tensor:
        return rearrange(x, "b n (heads d) -> b heads n d", heads=self.n_heads)

    def queries(self, features: Tensor) -> Tensor:  # (B, C, t, h, w) -> (B, heads, t*h*w, d_k)
        return self._heads(self.query(rearrange(features, "b c t h w -> b (t h w) c")))

    def keys_values(self, features: Tensor, embedded: Tensor) -> tuple[Tensor, Tensor]:
        """Unshifted keys (B, heads, n, d_k) and values (B, heads, n, d_v) of the positions in a box."""
        inputs = rearrange(torch.cat([features, embedded], dim=1), "b c t h w -> b (t h w) c")
        keys, values = self.key_value(inputs).split([self.key_channels, self.value_channels], dim=-1)
        return self._heads(keys), self._heads(values)

    def start_keys_values(self, batch: int) -> tuple[Tensor, Tensor]:
        """Key and value of slot 0, read by every position (all that position 0 reads): (B, heads, 1, d)."""
        start = self.start.expand(batch, 1, -1)  # (B, 1, d_k + d_v)
        keys, values = start.split([self.key_channels, self.value_channels], dim=-1)
        return self._heads(keys), self._heads(values)

    def _sdpa_causal(self, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        # The kernels that never form the (N, N) score matrix (flash attention, on CPU too) want one head size
        # for queries, keys and values, and (on CPU) no dropout; otherwise PyTorch falls back to the matrix.
        # Zero channels appended to queries and keys leave every score unchanged; the scale stays that of the
        # true key size.
        d_k, d_v = queries.shape[-1], values.shape[-1]
        width = max(d_k, d_v)
        queries, keys, values = (F.pad(x, (0, width - x.shape[-1])) for x in (queries, keys, values))
        attended = F.scaled_dot_product_attention(queries, keys, values, is_causal=True, scale=d_k**-0.5)
        return attended[..., :d_v]

    def combine(self, features: Tensor, attended: Tensor) -> Tensor:
        """features (B, C, t, h, w) + the projected attention output (B, heads, t*h*w, d_v/heads)."""
        t, h, w = features.shape[2:]
        out = self.out(rearrange(attended, "b heads n d -> b n (heads d)"))  # (B, n, C)
        return features + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h, w=w)

    def forward(self, features: Tensor, embedded: Tensor) -> Tensor:
        """features (B, C, T, H, W), embedded input (B, E, T, H, W) -> (B, C, T, H, W)."""
        keys, values = self.keys_values(features, embedded)  # (B, heads, N, d)
        start_key, start_value = self.start_keys_values(features.shape[0])
        keys = torch.cat([start_key, keys[:, :, :-1]], dim=2)  # slot p holds position p - 1
        values = torch.cat([start_value, values[:, :, :-1]], dim=2)
        return self.combine(features, self.causal_attention(self.queries(features), keys, values))


class PixelSNAILBlock(nn.Module):
    """`n_res_blocks` gated residual layers on each stream, then (optionally) attention on the horizontal."""

    def __init__(self, config: PixelSNAILConfig):
        super().__init__()
        c, k, p = config.channels, config.kernel_size, config.dropout
        n = config.n_res_blocks
        self.frame = nn.ModuleList(GatedResidual(c, 0, k, aux=False, dropout=p) for _ in range(n))
        self.vertical = nn.ModuleList(GatedResidual(c, 1, k, aux=True, dropout=p) for _ in range(n))
        self.horizontal = nn.ModuleList(GatedResidual(c, 2, k, aux=True, dropout=p) for _ in range(n))
        self.attention = (
            CausalSelfAttention(c, config.embed_dim, config.key_channels, config.value_channels,
                                config.n_heads)
            if config.attention else None
        )

    def forward(self, frame: Tensor, vertical: Tensor, horizontal: Tensor, embedded: Tensor,
                background: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        for frame_layer, vertical_layer, horizontal_layer in zip(self.frame, self.vertical, self.horizontal,
                                                                strict=True):
            frame = frame_layer(frame, background)
            vertical = vertical_layer(vertical, background, aux=frame)
            horizontal = horizontal_layer(horizontal, background, aux=vertical)
        if self.attention is not None:
            horizontal = self.attention(horizontal, embedded)
        return frame, vertical, horizontal


def previous_frame_neighbourhood(shape: Shape3) -> tuple[Tensor, Tensor]:
    """For each flat position p = (t, h, w) of a (T, H, W) grid, the flat indices (N, 9) of the positions
    (t - 1, h + dy, w + dx), dy, dx in -1, 0, 1 (row-major), and whether each lies inside the grid (N, 9) bool.
    Outside ones (and all of frame 0's) point at index 0; the mask says to ignore them."""
    t, h, w = shape
    ts, hs, ws = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    offsets = torch.tensor([-1, 0, 1])
    rows = hs.reshape(-1, 1, 1) + offsets.view(1, 3, 1)  # (N, 3, 1)
    columns = ws.reshape(-1, 1, 1) + offsets.view(1, 1, 3)  # (N, 1, 3)
    frames = ts.reshape(-1, 1, 1) - 1
    valid = (frames >= 0) & (rows >= 0) & (rows < h) & (columns >= 0) & (columns < w)  # (N, 3, 3)
    index = (frames * h + rows) * w + columns
    return torch.where(valid, index, 0).view(-1, 9), valid.view(-1, 9)


class CopyHead(nn.Module):
    """p(x) = (1 - g) softmax(logits)(x) + g Σ_j a_j [c_j = x] over the codes c_j of the previous frame's 3×3
    neighbourhood: a_j = softmax_j(offset_j(f) + query(f) · e(c_j)) points at one of them (by where it lies
    and by what it holds), g = sigmoid(gate(f)) weighs copying against the softmax; f are the head's features
    at the position. Starts near the plain softmax (g ≈ 0.27, uniform pointer)."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.offset = nn.Linear(channels, 9)
        self.query = nn.Linear(channels, embed_dim)
        self.gate = nn.Linear(channels, 1)
        for layer in (self.offset, self.query):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, -1.0)

    def forward(self, logits: Tensor, features: Tensor, candidates: Tensor, candidate_embedded: Tensor,
                valid: Tensor) -> Tensor:
        """Log-probabilities (..., K) of the mixture, from the softmax's logits (..., K), the features
        (..., C) after the head's activation, the neighbourhood's codes (..., 9) int64 and their embeddings
        (..., 9, E), and which of them exist (..., 9) bool, broadcast against the rest. Where none exists
        (frame 0) the softmax's own log-probabilities come back."""
        log_probs = F.log_softmax(logits, dim=-1)
        pointer, gate, any_valid = self._pointer(features, candidate_embedded, valid)
        copied = torch.zeros_like(log_probs).scatter_add_(-1, candidates, pointer)
        return torch.where(any_valid, self._mix(log_probs, copied, gate), log_probs)

    def score(self, logits: Tensor, features: Tensor, candidates: Tensor, candidate_embedded: Tensor,
              valid: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """`forward`'s log-probability at `targets` (...) int64, and its argmax (...), without the mixture over
        all K codes: a code outside the 9 candidates gets only the softmax's share, so the mixture's most likely
        code is the softmax's or a candidate, and 10 codes per position decide it."""
        normaliser = logits.logsumexp(-1, keepdim=True)  # (..., 1)
        pointer, gate, any_valid = self._pointer(features, candidate_embedded, valid)
        contenders = torch.cat([targets.unsqueeze(-1), logits.argmax(-1, keepdim=True), candidates], -1)  # (..., 11)
        log_probs = logits.gather(-1, contenders) - normaliser  # (..., 11) the softmax's, at the contenders
        copied = (pointer.unsqueeze(-2) * (contenders.unsqueeze(-1) == candidates.unsqueeze(-2))).sum(-1)
        mixed = torch.where(any_valid, self._mix(log_probs, copied, gate), log_probs)  # (..., 11)
        best = mixed[..., 1:].argmax(-1, keepdim=True)  # among the softmax's argmax and the candidates
        return mixed[..., 0], contenders[..., 1:].gather(-1, best).squeeze(-1)

    def _pointer(self, features: Tensor, candidate_embedded: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The pointer's weights over the candidates (..., 9), the gate's logit (..., 1) and whether any
        candidate exists (..., 1) bool."""
        scores = self.offset(features) + (candidate_embedded @ self.query(features).unsqueeze(-1)).squeeze(-1)
        any_valid = valid.any(-1, keepdim=True)
        # Where nothing is valid every score is kept (finite, uniform pointer) and the result discarded by callers.
        pointer = scores.masked_fill(~valid & any_valid, float("-inf")).softmax(-1)  # (..., 9)
        return pointer, self.gate(features), any_valid

    @staticmethod
    def _mix(log_probs: Tensor, copied: Tensor, gate: Tensor) -> Tensor:
        """log((1 - g) p + g q) from log p, q and g's logit."""
        # log(0) -> -69 instead of -inf: exp() of it vanishes in the mixture, and its gradient stays finite.
        return torch.logaddexp(F.logsigmoid(-gate) + log_probs, F.logsigmoid(gate) + copied.clamp_min(1e-30).log())


class ResBlock3d(nn.Module):
    """A non-causal residual block, x + conv(elu(conv(elu(x)))), for the conditioning stack; with `norm`,
    x + conv(elu(norm(conv(elu(norm(x)))))), each norm a GroupNorm of one group."""

    def __init__(self, channels: int, kernel_size: int, dropout: float, norm: bool = False):
        super().__init__()
        padding = kernel_size // 2
        normed = lambda: [nn.GroupNorm(1, channels)] if norm else []
        self.body = nn.Sequential(
            *normed(), nn.ELU(), nn.Conv3d(channels, channels, kernel_size, padding=padding),
            *normed(), nn.ELU(), nn.Dropout(dropout), nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W)
        return x + self.body(x)


class ConditionStack(nn.Module):
    """Embedded top codes (B, C_c, T/2, H/2, W/2) -> background features (B, C, T, H, W) on the bottom grid.

    Non-causal: the whole top grid is known before any bottom code is sampled. Unnormalised (the default, and
    every prior made before `condition_norm`), the residual stream can drift far below zero in training, where
    every ELU gives -1: the stack's output is then one constant whatever the top codes, and the prior is in
    effect unconditional (the demo's bottom prior at seed 0: 3.411 bits per code given its clips' top codes or
    another clip's). `condition_norm` normalises before every activation, which keeps them in reach.
    """

    def __init__(self, config: PixelSNAILConfig):
        super().__init__()
        c = config.condition_channels
        self.blocks = nn.Sequential(*(ResBlock3d(c, config.kernel_size, config.dropout, config.condition_norm)
                                      for _ in range(config.n_cond_res_blocks)))
        self.norm = nn.GroupNorm(1, c) if config.condition_norm else nn.Identity()
        # kernel 4, stride 2, padding 1 doubles every axis exactly; each output mixes a 2×2×2 neighbourhood.
        self.upsample = nn.ConvTranspose3d(c, config.channels, 4, stride=2, padding=1)

    def forward(self, condition: Tensor) -> Tensor:
        return self.upsample(F.elu(self.norm(self.blocks(condition))))


def codebook_coordinates(codebook: Tensor, width: int) -> Tensor:
    """A VQ-VAE codebook (K, D) as K points of at most `width` coordinates: centred, along its principal axes
    (a rotation when width >= D, so distances are kept; otherwise the projection that keeps most of them),
    scaled to unit standard deviation overall like a default `nn.Embedding`. (K, min(D, width)) float32."""
    if codebook.ndim != 2 or not torch.isfinite(codebook).all():
        raise ValueError(f"codebook: expected finite values of shape (K, D), got {tuple(codebook.shape)}")
    centred = codebook.double() - codebook.double().mean(0)
    axes = torch.linalg.svd(centred).Vh[:width]  # (min(D, width), D), by decreasing variance
    coordinates = centred @ axes.T
    spread = coordinates.std()
    if not spread > 0:
        raise ValueError("codebook: all its vectors are equal, so they say nothing about the codes")
    return (coordinates / spread).float()


def check_codes(codes: Tensor, num_codes: int, shape: Shape3, name: str) -> None:
    """Raise ValueError unless `codes` is an int64 (B, *shape) tensor with values in [0, num_codes)."""
    if not isinstance(codes, Tensor):
        raise ValueError(f"{name}: expected a tensor of codes, got {type(codes).__name__}")
    if codes.dtype != torch.int64:
        raise ValueError(f"{name}: expected int64 codes, got {codes.dtype}")
    if codes.ndim != 4 or tuple(codes.shape[1:]) != tuple(shape):
        raise ValueError(f"{name}: expected shape (B, {', '.join(map(str, shape))}), "
                         f"got {tuple(codes.shape)}")
    if codes.numel():
        low, high = (int(bound) for bound in torch.aminmax(codes))  # one pass: samplers check every step
        if low < 0 or high >= num_codes:
            raise ValueError(f"{name}: codes must lie in [0, {num_codes}), got values in [{low}, {high}]")


class PixelSNAIL(nn.Module):
    """A PixelSNAIL prior over codes (B, T, H, W) int64 in [0, K): p(codes), or p(codes | top) if conditional.

    `log_probs(codes)[:, :, t, h, w]` depends only on the codes before (t, h, w) in raster order, and on the
    whole condition.
    """

    def __init__(self, config: PixelSNAILConfig):
        super().__init__()
        self.config = config
        c, e, k = config.channels, config.embed_dim, config.kernel_size
        t, h, w = config.shape
        self.embedding = nn.Embedding(config.num_codes, e)
        # Learned per-axis positional embeddings, summed: the streams' zero padding alone says little about
        # where a position lies, and attention has no notion of distance without them.
        self.position_time = nn.Parameter(torch.randn(c, t) * 0.1)
        self.position_row = nn.Parameter(torch.randn(c, h) * 0.1)
        self.position_column = nn.Parameter(torch.randn(c, w) * 0.1)
        if config.conditional:
            self.condition_embedding = nn.Embedding(config.condition_num_codes, config.condition_channels)
            self.condition_stack = ConditionStack(config)
        # Strict stems: the frame stream starts from frames < t, vertical from rows < h, horizontal from
        # columns < w; every later layer may then include its own index.
        self.frame_stem = CausalConv3d(e, c, 0, k, strict=True)
        self.vertical_stem = CausalConv3d(e, c, 1, k, strict=True)
        self.horizontal_stem = CausalConv3d(e, c, 2, k, strict=True)
        self.blocks = nn.ModuleList(PixelSNAILBlock(config) for _ in range(config.n_blocks))
        # Tied: the head projects onto the code embeddings' space, and `code_bias` is each code's own bias.
        self.head = nn.Sequential(nn.ELU(), Pointwise(c, e if config.tied_head else config.num_codes))
        self.code_bias = nn.Parameter(torch.zeros(config.num_codes)) if config.tied_head else None
        self.copy = CopyHead(c, e) if config.copy_head else None
        if config.copy_head:
            index, valid = previous_frame_neighbourhood(config.shape)
            self.register_buffer("copy_index", index, persistent=False)  # (N, 9)
            self.register_buffer("copy_valid", valid, persistent=False)  # (N, 9)

    def check_inputs(self, codes: Tensor, condition: Tensor | None = None) -> None:
        """Raise ValueError unless `codes` (and `condition`, exactly when the prior is conditional) fit."""
        config = self.config
        check_codes(codes, config.num_codes, config.shape, "codes")
        if not config.conditional:
            if condition is not None:
                raise ValueError("condition: this prior is unconditional, got a condition")
            return
        if condition is None:
            raise ValueError(f"condition: this prior needs top codes of shape (B, "
                             f"{', '.join(map(str, config.condition_shape))})")
        check_codes(condition, config.condition_num_codes, config.condition_shape, "condition")
        if condition.shape[0] != codes.shape[0]:
            raise ValueError(f"condition: batch {condition.shape[0]} differs from the codes' batch "
                             f"{codes.shape[0]}")

    @torch.no_grad()
    def init_code_embeddings(self, codebook: Tensor, condition_codebook: Tensor | None = None) -> None:
        """Start the code embeddings from the VQ-VAE's codebook (K, D), and those of the condition (the top
        codes) from its codebook, through `codebook_coordinates`. Embedding channels beyond D keep their
        random start."""
        pairs = [("codebook", codebook, self.embedding)]
        if self.config.conditional:
            if condition_codebook is None:
                raise ValueError("condition_codebook: this prior is conditional and needs the top codebook too")
            pairs.append(("condition_codebook", condition_codebook, self.condition_embedding))
        elif condition_codebook is not None:
            raise ValueError("condition_codebook: this prior is unconditional, got a condition codebook")
        for name, vectors, embedding in pairs:
            if vectors.ndim != 2 or vectors.shape[0] != embedding.num_embeddings:
                raise ValueError(f"{name}: expected shape ({embedding.num_embeddings}, D), "
                                 f"got {tuple(vectors.shape)}")
            coordinates = codebook_coordinates(vectors, embedding.embedding_dim)
            embedding.weight[:, : coordinates.shape[1]] = coordinates.to(embedding.weight)

    def embed(self, codes: Tensor) -> Tensor:  # (B, T, H, W) int64 -> (B, E, T, H, W)
        return rearrange(self.embedding(codes), "b t h w e -> b e t h w")

    def embed_condition(self, condition: Tensor) -> Tensor:  # (B, T', H', W') int64 -> (B, C_c, T', H', W')
        return rearrange(self.condition_embedding(condition), "b t h w e -> b e t h w")

    def background(self, condition_embedded: Tensor | None = None) -> Tensor:
        """What every position may see whatever the order: its coordinates, plus the condition when there is
        one. (1, C, T, H, W) unconditional, (B, C, T, H, W) conditional."""
        position = (self.position_time[:, :, None, None] + self.position_row[:, None, :, None]
                    + self.position_column[:, None, None, :])[None]  # (1, C, T, H, W)
        if condition_embedded is None:
            return position
        return position + self.condition_stack(condition_embedded)

    def forward_embedded(self, embedded: Tensor, condition_embedded: Tensor | None = None, *,
                         codes: Tensor | None = None, classes_last: bool = False) -> Tensor:
        """Logits (B, K, T, H, W) from embedded codes (B, E, T, H, W) and, for the bottom prior, the embedded
        condition (B, C_c, T', H', W'). Gradients w.r.t. either show what each position depends on.
        `classes_last` returns the same logits as a contiguous (B, T, H, W, K), the layout a cross-entropy over
        the classes reads fastest (training's loss: half the time of the (B, K, ...) view).
        With the copy head the codes (B, T, H, W) themselves are needed too (the pointer copies code values;
        their embeddings are read from `embedded`), and the logits are the mixture's log-probabilities."""
        config = self.config
        if embedded.ndim != 5 or tuple(embedded.shape[1:]) != (config.embed_dim, *config.shape):
            expected = ", ".join(map(str, (config.embed_dim, *config.shape)))
            raise ValueError(f"embedded: expected shape (B, {expected}), got {tuple(embedded.shape)}")
        if config.conditional != (condition_embedded is not None):
            raise ValueError("condition_embedded: required exactly when the prior is conditional")
        if condition_embedded is not None:
            expected = (embedded.shape[0], config.condition_channels, *config.condition_shape)
            if tuple(condition_embedded.shape) != expected:
                raise ValueError(f"condition_embedded: expected shape {expected}, "
                                 f"got {tuple(condition_embedded.shape)}")
        if self.copy is not None and (codes is None or tuple(codes.shape) != (embedded.shape[0], *config.shape)):
            raise ValueError(f"codes: a prior with a copy head needs the codes (B, "
                             f"{', '.join(map(str, config.shape))}) that `embedded` embeds")
        horizontal = self._features(embedded, condition_embedded)
        if self.copy is None:
            return self.head_logits(horizontal, classes_last=classes_last)
        features, candidates, candidate_embedded = self._copy_inputs(horizontal, embedded, codes)
        log_probs = self.copy(self.project(features), features, candidates, candidate_embedded, self.copy_valid)
        log_probs = log_probs.view(*codes.shape, -1)  # (B, T, H, W, K)
        return log_probs if classes_last else log_probs.movedim(-1, 1)

    def _features(self, embedded: Tensor, condition_embedded: Tensor | None) -> Tensor:
        """The horizontal stream's features (B, C, T, H, W) after the last block: what the head reads."""
        background = self.background(condition_embedded)
        frame = self.frame_stem(embedded)  # (B, C, T, H, W)
        vertical = self.vertical_stem(embedded)
        horizontal = self.horizontal_stem(embedded)
        for block in self.blocks:
            frame, vertical, horizontal = block(frame, vertical, horizontal, embedded, background)
        return horizontal

    def _copy_inputs(self, horizontal: Tensor, embedded: Tensor, codes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """What the copy head reads at every position: the activated features (B, N, C), the previous frame's
        neighbourhood codes (B, N, 9) and their embeddings (B, N, 9, E)."""
        features = rearrange(self.head[0](horizontal), "b c t h w -> b (t h w) c")
        candidates = codes.flatten(1)[:, self.copy_index]
        candidate_embedded = rearrange(embedded, "b e t h w -> b (t h w) e")[:, self.copy_index]
        return features, candidates, candidate_embedded

    def score(self, codes: Tensor, condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """What training and evaluation need of codes (B, T, H, W) int64 [given top codes]: the log-probability
        of each code given the codes before it (B, T, H, W) float, and the most likely code at each position
        (B, T, H, W) int64. Equal to reading both off `log_probs`, but with the copy head it computes the
        mixture at 11 codes per position (the target, the softmax's argmax and the 9 candidates) instead of all K."""
        self.check_inputs(codes, condition)
        condition_embedded = self.embed_condition(condition) if condition is not None else None
        embedded = self.embed(codes)
        horizontal = self._features(embedded, condition_embedded)
        if self.copy is None:
            logits = self.head_logits(horizontal, classes_last=True)  # (B, T, H, W, K)
            # (B·T·H·W, K): the layout a cross-entropy reads fastest, half the time of the (B, K, ...) view
            nats = F.cross_entropy(logits.flatten(0, -2).float(), codes.flatten(), reduction="none")
            return -nats.view(codes.shape), logits.argmax(-1)
        features, candidates, candidate_embedded = self._copy_inputs(horizontal, embedded, codes)
        log_probs, most_likely = self.copy.score(self.project(features), features, candidates, candidate_embedded,
                                                 self.copy_valid, codes.flatten(1))
        return log_probs.view(codes.shape), most_likely.view(codes.shape)

    def step_log_probs(self, logits: Tensor, features: Tensor, codes: Tensor, position: int) -> Tensor:
        """Log-probabilities (B, K) at one flat `position`, for the samplers: from the head's logits (B, K),
        its features after the activation (B, C) and the codes so far (B, N) flat."""
        if self.copy is None:
            return F.log_softmax(logits, dim=-1)
        candidates = codes[:, self.copy_index[position]]  # (B, 9)
        return self.copy(logits, features, candidates, self.embedding(candidates), self.copy_valid[position])

    def head_logits(self, features: Tensor, *, classes_last: bool = False) -> Tensor:
        """Logits (B, K, ...) of the horizontal stream's features (B, C, ...), or (B, ..., K) contiguous with
        `classes_last`."""
        logits = self.project(self.head[0](features).movedim(1, -1))  # (B, ..., K)
        return logits if classes_last else logits.movedim(-1, 1)

    def project(self, activated: Tensor) -> Tensor:
        """Logits (..., K) of the head's activated features (..., C), channels last: its linear map."""
        output = self.head[1]
        logits = F.linear(activated, output.weight, output.bias)  # (..., K), or (..., E) when tied
        if self.code_bias is not None:
            logits = F.linear(logits, self.embedding.weight, self.code_bias)
        return logits

    def output_layer(self) -> tuple[Tensor, Tensor]:
        """The head after its activation as one linear map: weight (K, C) and bias (K,) of the logits."""
        output = self.head[-1]
        if self.code_bias is None:
            return output.weight, output.bias
        codes = self.embedding.weight  # (K, E)
        return codes @ output.weight, codes @ output.bias + self.code_bias

    def forward(self, codes: Tensor, condition: Tensor | None = None, *, classes_last: bool = False) -> Tensor:
        """Logits (B, K, T, H, W) of codes (B, T, H, W) int64 [given top codes (B, T', H', W') int64]; with
        `classes_last`, as (B, T, H, W, K)."""
        self.check_inputs(codes, condition)
        condition_embedded = self.embed_condition(condition) if condition is not None else None
        return self.forward_embedded(self.embed(codes), condition_embedded, codes=codes,
                                     classes_last=classes_last)

    def log_probs(self, codes: Tensor, condition: Tensor | None = None) -> Tensor:
        """Log-probabilities (B, K, T, H, W) of every code value at every position, given earlier codes."""
        return F.log_softmax(self(codes, condition), dim=1)
