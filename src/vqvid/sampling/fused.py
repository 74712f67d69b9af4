"""The incremental stepper with each position's work fused into a few matrix products on preallocated buffers.

`IncrementalStepper` computes a position through the prior's own modules: per layer a dozen small tensor ops,
each with its reshapes, window gathering and module-call overhead. At `tiny` width that overhead, not the
arithmetic, is what a position costs. `FusedStepper` keeps its caches and its once-per-frame and once-per-row
work, and replaces the once-per-position part (the horizontal stream, attention, the output layer) by:

- the causal row convolutions as one `addmm` each on a window that is a strided *view* of a row buffer laid
  out (B, column, channel), so that the kernel's taps are contiguous and nothing is gathered or padded;
- what a position's layers add that does not depend on the row's own earlier columns (the vertical stream
  through `aux_in`, the background through `background_in`, the biases) computed once per row for all its
  columns, and passed as the `addmm` bias;
- attention keys and values of the input embedding looked up from a table of every code's projection,
  the query scaled in its weights, and the score and weighted sum as two batched products;
- every per-column view (windows, slots, biases) made once, so a step slices nothing.

The arithmetic is that of the network, in another order: log-probabilities agree with `IncrementalStepper`
and a full forward pass to float rounding (tests check 1e-4 at every step), not bit for bit. The codec keeps
`IncrementalStepper`, whose floats the existing .vqv files were written with. Weights are read when the stepper
is made: change the prior afterwards and make a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vqvid.models.pixelsnail import CausalConv3d, CausalSelfAttention, GatedResidual, PixelSNAIL
from vqvid.sampling.steppers import IncrementalStepper, _check_position, _check_step_codes, _unravel


def row_weight(conv: CausalConv3d) -> Tensor:
    """The weight of a convolution causal along columns as the matrix (taps * C_in, C_out) that multiplies a
    window of its input laid out (tap, channel), oldest column first: window @ row_weight + bias is the
    convolution's output at the window's last column (strict: the column after it)."""
    if conv.axis != 2:
        raise ValueError(f"row_weight: expected a convolution causal along columns (axis 2), got axis {conv.axis}")
    weight = conv.conv.weight[:, :, 0, 0, :]  # (C_out, C_in, taps)
    return weight.permute(0, 2, 1).reshape(weight.shape[0], -1).t()  # (taps * C_in, C_out)


def row_windows(buffer: Tensor, taps: int) -> list[Tensor]:
    """Views (B, taps * C) of a row buffer (B, taps - 1 + W, C): entry w holds buffer columns w .. w + taps - 1.
    Views, not copies: they see what is written into the buffer later."""
    batch, columns, channels = buffer.shape
    return [buffer[:, w:w + taps].view(batch, taps * channels) for w in range(columns - taps + 1)]


@dataclass
class _Residual:
    """One gated residual layer of the horizontal stream, as a step runs it (see `FusedStepper._residual`)."""

    module: GatedResidual
    layer: int  # index into the frame / vertical stream caches
    weight_in: Tensor  # (taps * C, C) conv_in's row weight
    weight_out: Tensor  # (taps * C, 2C) conv_out's row weight
    inputs: Tensor  # (B, taps - 1 + W, C) elu(x) of the current row, after taps - 1 zero columns
    hidden: Tensor  # (B, taps - 1 + W, C) elu(conv_in(...) + aux) of the current row, likewise
    row_in: Tensor  # (B, W, C) conv_in.bias + aux_in(elu(vertical)) over the current row
    row_out: Tensor  # (B, W, 2C) conv_out.bias + background_in(background) over the current row
    out: Tensor  # (B, 2C) conv_out's output at the current position: value, then gate
    value: Tensor  # (B, C) views of `out`
    gate: Tensor
    x: Tensor  # (B, C) the layer's output at the current position
    input_windows: list[Tensor]  # per column w: (B, taps * C) views of `inputs`
    hidden_windows: list[Tensor]
    input_slots: list[Tensor]  # per column w: (B, C) the view of `inputs` at w
    hidden_slots: list[Tensor]
    row_in_at: list[Tensor]  # per column w: (B, C) the view of `row_in` at w
    row_out_at: list[Tensor]  # (B, 2C)


@dataclass
class _Attention:
    """One attention layer as a step runs it: a single query against the cached keys and values."""

    module: CausalSelfAttention
    query_weight: Tensor  # (C, d_k) scaled by 1 / sqrt(d_k / heads), as is the bias
    query_bias: Tensor  # (B, d_k)
    feature_weight: Tensor  # (C, d_k + d_v) the key_value weight on the stream's channels
    feature_bias: Tensor  # (B, d_k + d_v)
    code_table: Tensor  # (K, d_k + d_v) the key_value weight applied to every code's embedding
    out_weight: Tensor  # (d_v, C)
    out_bias: Tensor  # (B, C)
    keys: Tensor  # (B * heads, d_k / heads, N) transposed; slot p holds position p - 1
    values: Tensor  # (B * heads, N, d_v / heads)
    queries: Tensor  # (B, d_k) at the current position
    features: Tensor  # (B, d_k + d_v) the stream's part of the current position's key and value
    x: Tensor  # (B, C) the layer's output at the current position


class FusedStepper(IncrementalStepper):
    """`IncrementalStepper` with the per-position part fused (see the module docstring): same interface, same
    caches, the same distributions to float rounding, a fraction of the per-position overhead."""

    @torch.no_grad()
    def __init__(self, prior: PixelSNAIL, codes: int | Tensor, *, condition: Tensor | None = None,
                 start: int = 0):
        super().__init__(prior, codes, condition=condition, start=start)
        config = prior.config
        batch = self.codes.shape[0]
        t_size, h_size, w_size = self._shape
        self._n_positions = t_size * h_size * w_size
        taps = config.kernel_size // 2 + 1
        c = config.channels
        zeros = lambda *size: torch.zeros(*size, device=self.codes.device, dtype=self._embedded.dtype)
        # Biases as whole (B, n) matrices: addmm then adds them without broadcasting.
        rows = lambda bias: bias.expand(batch, -1).contiguous()

        self._codes_flat = self.codes.view(batch, -1)  # (B, N) views of the grids fed at each step
        self._embedded_flat = self._embedded.view(batch, config.embed_dim, -1)  # (B, E, N)
        self._embedding_weight = prior.embedding.weight  # (K, E)
        # The strict stem reads columns w - taps .. w - 1: `taps` zero columns in front.
        self._row_embedded = zeros(batch, taps + w_size, config.embed_dim)  # (B, taps + W, E)
        self._embedded_windows = row_windows(self._row_embedded, taps)[:w_size]
        self._embedded_slots = [self._row_embedded[:, taps + w] for w in range(w_size)]
        self._stem_weight = row_weight(prior.horizontal_stem)  # (taps * E, C)
        self._stem_bias = rows(prior.horizontal_stem.conv.bias)
        self._stem_x = zeros(batch, c)

        self._blocks: list[tuple[list[_Residual], _Attention | None]] = []
        layer = 0
        for block in prior.blocks:
            residuals = []
            for module in block.horizontal:
                inputs, hidden = zeros(batch, taps - 1 + w_size, c), zeros(batch, taps - 1 + w_size, c)
                row_in, row_out, out = zeros(batch, w_size, c), zeros(batch, w_size, 2 * c), zeros(batch, 2 * c)
                residuals.append(_Residual(
                    module=module, layer=layer,
                    weight_in=row_weight(module.conv_in), weight_out=row_weight(module.conv_out),
                    inputs=inputs, hidden=hidden, row_in=row_in, row_out=row_out,
                    out=out, value=out[:, :c], gate=out[:, c:], x=zeros(batch, c),
                    input_windows=row_windows(inputs, taps), hidden_windows=row_windows(hidden, taps),
                    input_slots=[inputs[:, taps - 1 + w] for w in range(w_size)],
                    hidden_slots=[hidden[:, taps - 1 + w] for w in range(w_size)],
                    row_in_at=[row_in[:, w] for w in range(w_size)],
                    row_out_at=[row_out[:, w] for w in range(w_size)],
                ))
                layer += 1
            attention = None
            if block.attention is not None:
                attention = self._fused_attention(block.attention, batch, rows, zeros)
            self._blocks.append((residuals, attention))
        head_weight, head_bias = (x.detach() for x in prior.output_layer())
        self._head_weight = head_weight.t()  # (C, K)
        self._head_bias = rows(head_bias)
        self._head_x = zeros(batch, c)

        if self.position < self._n_positions:
            t, h, _ = _unravel(self.position, self._shape)
            self._start_row(t, h)
            # Earlier columns of this row come from the pass over the grid; later ones are written before read.
            self._row_embedded[:, taps:] = self._embedded[:, :, t, h].transpose(1, 2)
            for residuals, _ in self._blocks:
                for residual in residuals:
                    conv_in, conv_out = residual.module.conv_in, residual.module.conv_out
                    residual.inputs[:, taps - 1:] = self._inputs[conv_in][:, :, t, h].transpose(1, 2)
                    residual.hidden[:, taps - 1:] = self._inputs[conv_out][:, :, t, h].transpose(1, 2)
        # The horizontal stream's grid caches are not read again: the row buffers replace them.
        for residuals, _ in self._blocks:
            for residual in residuals:
                del self._inputs[residual.module.conv_in], self._inputs[residual.module.conv_out]
        del self._inputs[prior.horizontal_stem]

    def _fused_attention(self, attention: CausalSelfAttention, batch: int, rows: Callable[[Tensor], Tensor],
                         zeros: Callable[..., Tensor]) -> _Attention:
        """The attention layer's weights as a step uses them; takes over its key and value caches."""
        heads, d_k, c = attention.n_heads, attention.key_channels, self.prior.config.channels
        scale = (d_k // heads) ** -0.5
        key_value = attention.key_value  # Linear(C + E -> d_k + d_v)
        keys = self._keys.pop(attention)  # (B, heads, N, d_k / heads)
        values = self._values.pop(attention)
        return _Attention(
            module=attention,
            query_weight=(attention.query.weight * scale).t(),
            query_bias=rows(attention.query.bias * scale),
            feature_weight=key_value.weight[:, :c].t(),
            feature_bias=rows(key_value.bias),
            code_table=self.prior.embedding.weight @ key_value.weight[:, c:].t(),
            out_weight=attention.out.weight.t(),
            out_bias=rows(attention.out.bias),
            keys=keys.transpose(2, 3).contiguous().view(batch * heads, d_k // heads, -1),
            values=values.contiguous().view(batch * heads, *values.shape[2:]),
            queries=zeros(batch, d_k),
            features=zeros(batch, d_k + attention.value_channels),
            x=zeros(batch, c),
        )

    def _start_row(self, t: int, h: int) -> None:
        """The per-row terms of every horizontal layer for row (t, h), whose vertical stream is final."""
        background = self._background[:, :, t, h].transpose(1, 2)  # (B or 1, W, C)
        for residuals, _ in self._blocks:
            for residual in residuals:
                module = residual.module
                vertical = self._vertical_stream[residual.layer][:, :, t, h].transpose(1, 2)  # (B, W, C)
                torch.add(F.linear(F.elu(vertical), module.aux_in.weight, module.aux_in.bias),
                          module.conv_in.conv.bias, out=residual.row_in)
                residual.row_out.copy_(F.linear(background, module.background_in.weight,
                                                module.background_in.bias) + module.conv_out.conv.bias)

    @torch.no_grad()
    def step_log_probs(self) -> Tensor:
        """Log-probabilities (B, K) of the codes at `position`, given the codes before it."""
        if self._log_probs is None:
            position = _check_position(self.position, self._shape)
            w = position % self._shape[2]
            x = torch.addmm(self._stem_bias, self._embedded_windows[w], self._stem_weight, out=self._stem_x)
            for residuals, attention in self._blocks:
                for residual in residuals:
                    x = self._residual(residual, x, w)
                if attention is not None:
                    x = self._attend_one(attention, x, position)
            features = F.elu(x, inplace=True)
            logits = torch.addmm(self._head_bias, features, self._head_weight)  # (B, K)
            self._log_probs = self.prior.step_log_probs(logits, features, self._codes_flat, position)
        return self._log_probs

    @staticmethod
    def _residual(residual: _Residual, x: Tensor, w: int) -> Tensor:
        """GatedResidual.forward at column w of the current row: x (B, C) -> (B, C)."""
        F.elu(residual.input_slots[w].copy_(x), inplace=True)
        hidden = torch.addmm(residual.row_in_at[w], residual.input_windows[w], residual.weight_in,
                             out=residual.hidden_slots[w])  # (B, C)
        F.elu(hidden, inplace=True)
        torch.addmm(residual.row_out_at[w], residual.hidden_windows[w], residual.weight_out, out=residual.out)
        return torch.addcmul(x, residual.value, residual.gate.sigmoid_(), out=residual.x)

    @staticmethod
    def _attend_one(attention: _Attention, x: Tensor, position: int) -> Tensor:
        """CausalSelfAttention at one position p: the query reads slots 0 .. p (positions before p)."""
        batch_heads = attention.keys.shape[0]
        torch.addmm(attention.feature_bias, x, attention.feature_weight, out=attention.features)
        queries = torch.addmm(attention.query_bias, x, attention.query_weight, out=attention.queries)
        scores = torch.bmm(queries.view(batch_heads, 1, -1), attention.keys[:, :, :position + 1])  # (B*h, 1, p+1)
        attended = torch.bmm(scores.softmax(dim=-1), attention.values[:, :position + 1])  # (B*h, 1, d_v / h)
        out = torch.addmm(attention.out_bias, attended.view(x.shape[0], -1), attention.out_weight,
                          out=attention.x)
        return out.add_(x)

    @torch.no_grad()
    def feed(self, codes: Tensor) -> None:
        """Fix the codes (B,) int64 at `position`, store what later positions read of it, and move on."""
        codes = _check_step_codes(codes, self.codes.shape[0], self.prior.config.num_codes)
        self.step_log_probs()  # the attention inputs at this position give its keys and values
        position = self.position
        w_size = self._shape[2]
        self._codes_flat[:, position] = codes
        embedded = self._embedding_weight.index_select(0, codes)  # (B, E)
        self._embedded_flat[:, :, position] = embedded
        self._embedded_slots[position % w_size].copy_(embedded)
        slot = position + 1
        if slot < self._n_positions:
            for _, attention in self._blocks:
                if attention is not None:
                    d_k = attention.module.key_channels
                    batch_heads = attention.keys.shape[0]
                    key_value = attention.code_table.index_select(0, codes).add_(attention.features)  # (B, dk+dv)
                    attention.keys[:, :, slot] = key_value[:, :d_k].reshape(batch_heads, -1)
                    attention.values[:, slot] = key_value[:, d_k:].reshape(batch_heads, -1)
        self.position = slot
        self._log_probs = None
        if slot < self._n_positions and slot % w_size == 0:
            t, h, _ = _unravel(slot, self._shape)
            if h == 0:
                self._frames((slice(t, t + 1),))
            self._rows((slice(t, t + 1), slice(h, h + 1)))
            self._start_row(t, h)
