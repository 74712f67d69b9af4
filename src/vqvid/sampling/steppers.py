"""Per-position distributions of a PixelSNAIL prior, one position at a time, in raster order.

A stepper walks the grid: `step_log_probs()` gives the distribution (B, K) of the codes at the current
position given all earlier ones, and `feed(codes)` fixes the codes there and moves on. Sampling draws from it;
the entropy coder encodes the true codes with it, and the decoder feeds back the codes it decodes: the same
computation both ways, so both sides see bit-identical distributions.

- `NaiveStepper` runs the whole network for every position: the reference.
- `IncrementalStepper` caches what earlier positions computed (Ramachandran et al. 2017, "Fast Generation for
  Convolutional Autoregressive Models", arXiv 1704.06001), so each step computes only what the new position
  changes: the frame stream once per frame, the vertical stream once per row, the horizontal stream and
  attention once per position, the conditioning stack once.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from vqvid.models.pixelsnail import CausalConv3d, CausalSelfAttention, PixelSNAIL, check_codes

# A box of the grid: one slice per axis up to a stream's causal axis, e.g. (frames,), (frames, rows) or
# (frames, rows, columns); the axes after it are whole.
Box = tuple[slice, ...]


def _prepare(prior: PixelSNAIL, codes: int | Tensor, condition: Tensor | None,
             start: int) -> tuple[Tensor, Tensor | None]:
    """The codes a stepper starts from, a copy of `codes` (B, T, H, W) or zeros for `codes` = B, and the
    condition, both on the prior's device."""
    config = prior.config
    n_positions = math.prod(config.shape)
    device = next(prior.parameters()).device
    if prior.training:
        raise ValueError("prior: call prior.eval() before stepping through it (dropout would make every step "
                         "random)")
    if isinstance(codes, int):
        if codes < 1:
            raise ValueError(f"n_or_codes: expected a batch size >= 1, got {codes}")
        if start != 0:
            raise ValueError(f"start={start}: the positions before it must be given, so pass codes, "
                             "not a batch size")
        codes = torch.zeros(codes, *config.shape, dtype=torch.int64, device=device)
    if not 0 <= start <= n_positions:
        raise ValueError(f"start: expected a flat position in [0, {n_positions}], got {start}")
    prior.check_inputs(codes, condition)
    return codes.to(device).clone(), condition.to(device) if condition is not None else None


class NaiveStepper:
    """Steps by running the whole prior on the codes so far: O(T·H·W) work per position. The reference."""

    def __init__(self, prior: PixelSNAIL, codes: int | Tensor, *, condition: Tensor | None = None,
                 start: int = 0):
        self.prior = prior
        self.codes, self.condition = _prepare(prior, codes, condition, start)  # (B, T, H, W) int64
        self.position = start  # flat index of the position whose codes come next

    @torch.no_grad()
    def step_log_probs(self) -> Tensor:
        """Log-probabilities (B, K) of the codes at `position`, given the codes before it."""
        t, h, w = _unravel(_check_position(self.position, self.prior.config.shape), self.prior.config.shape)
        return self.prior.log_probs(self.codes, self.condition)[:, :, t, h, w]

    def feed(self, codes: Tensor) -> None:
        """Fix the codes (B,) int64 at `position` and move to the next one."""
        t, h, w = _unravel(_check_position(self.position, self.prior.config.shape), self.prior.config.shape)
        self.codes[:, t, h, w] = _check_step_codes(codes, self.codes.shape[0], self.prior.config.num_codes)
        self.position += 1


class IncrementalStepper:
    """Steps with per-layer caches, so a position costs what it changes rather than a whole forward pass.

    The cache holds, over the whole grid, the input of every causal convolution, the frame and vertical
    streams after each layer (the vertical and horizontal streams read them), and each attention layer's keys
    and values. A step computes the new entries from windows of earlier ones. The codes before `start` are
    given: one forward pass over the grid fills the cache for them (teacher forcing). That pass also writes
    entries for later positions, from codes not yet fixed, but each is recomputed before it is read.

    Memory: about 8 n_blocks n_res_blocks grids of `channels` floats per sample, plus keys and values.
    """

    @torch.no_grad()
    def __init__(self, prior: PixelSNAIL, codes: int | Tensor, *, condition: Tensor | None = None,
                 start: int = 0):
        self.prior = prior
        self.codes, condition = _prepare(prior, codes, condition, start)  # (B, T, H, W) int64
        self.position = start
        config = prior.config
        self._shape = config.shape
        batch = self.codes.shape[0]
        self._embedded = prior.embed(self.codes)  # (B, E, T, H, W), updated as codes are fed
        condition_embedded = prior.embed_condition(condition) if condition is not None else None
        self._background = prior.background(condition_embedded)  # (B or 1, C, T, H, W), computed once
        grid = partial(torch.zeros, device=self.codes.device, dtype=self._embedded.dtype)
        stems = (prior.frame_stem, prior.vertical_stem, prior.horizontal_stem)
        self._inputs: dict[CausalConv3d, Tensor] = {
            conv: self._embedded if conv in stems else grid(batch, conv.conv.in_channels, *self._shape)
            for conv in prior.modules() if isinstance(conv, CausalConv3d)
        }
        n_layers = config.n_blocks * config.n_res_blocks
        self._frame_stream = [grid(batch, config.channels, *self._shape) for _ in range(n_layers)]
        self._vertical_stream = [grid(batch, config.channels, *self._shape) for _ in range(n_layers)]
        # Per attention layer: keys (B, heads, N, d_k), values (B, heads, N, d_v); slot p holds position p-1.
        self._keys: dict[CausalSelfAttention, Tensor] = {}
        self._values: dict[CausalSelfAttention, Tensor] = {}
        self._log_probs: Tensor | None = None  # of the current position, once computed
        # Attention inputs at the current position, from which its keys and values follow once it is fed.
        self._features: dict[CausalSelfAttention, Tensor] = {}
        t, h, w = self._shape
        self._frames((slice(0, t),))
        self._rows((slice(0, t), slice(0, h)))
        self._positions((slice(0, t), slice(0, h), slice(0, w)), whole_grid=True)

    def _conv(self, conv: CausalConv3d, inputs: Tensor | None, box: Box) -> Tensor:
        """`conv`'s output over `box`, after storing its input there (stems read the embeddings instead)."""
        buffer = self._inputs[conv]
        if inputs is not None:
            buffer[(slice(None), slice(None), *box)] = inputs
        window = _window(buffer, box, conv.taps, conv.strict)
        weight = conv.conv.weight  # (C_out, C_in, *kernel)
        if window.shape[2:] == weight.shape[2:] and not any(conv.conv.padding):
            # A single output (a position of the horizontal stream): one matrix product, cheaper than conv3d.
            out = F.linear(window.flatten(1), weight.flatten(1), conv.conv.bias)  # (B, C_out)
            return out[:, :, None, None, None]
        return conv.conv(window)

    def _frames(self, box: Box) -> None:
        """The frame stream, all layers, over frames `box` (whose earlier frames are final)."""
        apply = partial(self._conv, box=box)
        index = (slice(None), slice(None), *box)
        background = self._background[index]
        frame = self._conv(self.prior.frame_stem, None, box)
        for layer, residual in enumerate(self._layers("frame")):
            frame = residual(frame, background, apply=apply)
            self._frame_stream[layer][index] = frame

    def _rows(self, box: Box) -> None:
        """The vertical stream, all layers, over rows `box`; reads the frame stream there."""
        apply = partial(self._conv, box=box)
        index = (slice(None), slice(None), *box)
        background = self._background[index]
        vertical = self._conv(self.prior.vertical_stem, None, box)
        for layer, residual in enumerate(self._layers("vertical")):
            vertical = residual(vertical, background, aux=self._frame_stream[layer][index], apply=apply)
            self._vertical_stream[layer][index] = vertical

    def _positions(self, box: Box, whole_grid: bool = False) -> Tensor:
        """The features (B, C, *box) the head reads, from the horizontal stream and attention: either the whole
        grid, which fills the attention caches, or one position, which reads them."""
        apply = partial(self._conv, box=box)
        index = (slice(None), slice(None), *box)
        background = self._background[index]
        horizontal = self._conv(self.prior.horizontal_stem, None, box)
        layer = 0
        for block in self.prior.blocks:
            for residual in block.horizontal:
                vertical = self._vertical_stream[layer][index]
                horizontal = residual(horizontal, background, aux=vertical, apply=apply)
                layer += 1
            if block.attention is not None:
                self._features[block.attention] = horizontal
                horizontal = self._attend(block.attention, horizontal, whole_grid)
        return horizontal

    def _layers(self, stream: str):
        return (residual for block in self.prior.blocks for residual in getattr(block, stream))

    def _attend(self, attention: CausalSelfAttention, features: Tensor, whole_grid: bool) -> Tensor:
        queries = attention.queries(features)  # (B, heads, n, d_k)
        if whole_grid:  # as in the full forward pass, keeping the keys and values
            keys, values = attention.keys_values(features, self._embedded)
            start_key, start_value = attention.start_keys_values(features.shape[0])
            self._keys[attention] = torch.cat([start_key, keys[:, :, :-1]], dim=2)
            self._values[attention] = torch.cat([start_value, values[:, :, :-1]], dim=2)
            attended = attention.causal_attention(queries, self._keys[attention], self._values[attention])
        else:  # one position p: every slot up to p holds an earlier position, so no mask
            slots = slice(0, self.position + 1)
            attended = F.scaled_dot_product_attention(queries, self._keys[attention][:, :, slots],
                                                      self._values[attention][:, :, slots])
        return attention.combine(features, attended)

    @torch.no_grad()
    def step_log_probs(self) -> Tensor:
        """Log-probabilities (B, K) of the codes at `position`, given the codes before it."""
        if self._log_probs is None:
            t, h, w = _unravel(_check_position(self.position, self._shape), self._shape)
            features = self._positions((slice(t, t + 1), slice(h, h + 1), slice(w, w + 1))).flatten(1)  # (B, C)
            activated = self.prior.head[0](features)
            self._log_probs = self.prior.step_log_probs(self.prior.project(activated), activated,
                                                        self.codes.flatten(1), self.position)
        return self._log_probs

    @torch.no_grad()
    def feed(self, codes: Tensor) -> None:
        """Fix the codes (B,) int64 at `position`, store what later positions read of it, and move on."""
        codes = _check_step_codes(codes, self.codes.shape[0], self.prior.config.num_codes)
        self.step_log_probs()  # the attention inputs at this position give its keys and values
        t, h, w = _unravel(self.position, self._shape)
        self.codes[:, t, h, w] = codes
        self._embedded[:, :, t, h, w] = self.prior.embedding(codes)
        slot = self.position + 1
        if slot < math.prod(self._shape):
            embedded = self._embedded[:, :, t:t + 1, h:h + 1, w:w + 1]
            for attention, features in self._features.items():
                keys, values = attention.keys_values(features, embedded)  # (B, heads, 1, d)
                self._keys[attention][:, :, slot] = keys[:, :, 0]
                self._values[attention][:, :, slot] = values[:, :, 0]
        self.position += 1
        self._log_probs = None
        if self.position < math.prod(self._shape):
            t, h, w = _unravel(self.position, self._shape)
            if h == 0 and w == 0:
                self._frames((slice(t, t + 1),))
            if w == 0:
                self._rows((slice(t, t + 1), slice(h, h + 1)))


def _window(buffer: Tensor, box: Box, taps: int, strict: bool) -> Tensor:
    """What a causal convolution along axis len(box) - 1 reads of `buffer` (B, C, T, H, W) for its output
    over `box`: the box on the axes before, `taps` - 1 more indices back on the causal axis (one further back
    and one fewer when strict), zero before the grid's start, and the whole of the axes after."""
    axis = len(box) - 1
    first = box[axis].start - taps + 1 - strict
    window = buffer[(slice(None), slice(None), *box[:axis], slice(max(first, 0), box[axis].stop - strict))]
    if first < 0:
        window = F.pad(window, (0, 0) * (2 - axis) + (-first, 0))
    return window


def _unravel(position: int, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    _, h, w = shape
    return position // (h * w), position // w % h, position % w


def _check_position(position: int, shape: tuple[int, int, int]) -> int:
    if position >= math.prod(shape):
        raise ValueError(f"every position of the {shape} grid has been fed")
    return position


def _check_step_codes(codes: Tensor, batch: int, num_codes: int) -> Tensor:
    if not isinstance(codes, Tensor) or codes.shape != (batch,):
        raise ValueError(f"feed: expected codes of shape ({batch},), got "
                         f"{tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__}")
    check_codes(codes.reshape(batch, 1, 1, 1), num_codes, (1, 1, 1), "feed")
    return codes
