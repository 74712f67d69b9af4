"""The hierarchical 3D VQ-VAE: video -> top and bottom codes -> video.

VQ-VAE-2 (Razavi et al. 2019, "Generating Diverse High-Fidelity Images with VQ-VAE-2", arXiv 1906.00446,
Sec. 3.1 and Fig. 2a) with 3D convolutions, so that codes tile time as well as space:

    video (B, 3, T, H, W) in [-1, 1]
      -> bottom encoder, stride (2, 4, 4) -> bottom features (B, channels, T/2, H/4, W/4)
      -> top encoder, stride 2            -> top codes     (B, T/4, H/8, W/8)
      -> bottom quantiser                 -> bottom codes  (B, T/2, H/4, W/4)
      -> decoder: top vectors upsampled to the bottom grid and joined with the bottom vectors,
         then stride (2, 4, 4) up -> reconstruction (B, 3, T, H, W)

A 16×256×256 clip gives top codes 4×32×32 and bottom codes 8×64×64. Two hierarchies are offered:
- "conditioned" (VQ-VAE-2): the decoded top vectors are joined to the bottom features before the bottom is
  quantised, so bottom codes only carry what the top lacks;
- "independent": the bottom is quantised from bottom features alone, and the levels meet only in the decoder.

Level dropout (on by default, `level_dropout` = 0.25): in training, each clip's bottom vectors are zeroed with
that probability before the decoder, so the decoder must reconstruct those clips from the top codes alone, and
the top codes must carry the coarse content. Trained on reconstruction alone (`level_dropout=0`), VQ-VAE-2's
top level can carry nothing: on the demo's `tiny` model, decoding each held-out clip's bottom codes with another
clip's top codes cost 0.01 dB, and the top codes alone decoded to 13.8 dB, below a flat frame of the clip's mean
colour. Dropping the finer part of a representation at random so that the coarser part must stand alone is
nested dropout (Rippel et al. 2014, "Learning Ordered Representations with Nested Dropout", arXiv 1402.0915) and
the quantizer dropout of residual vector quantisation (SoundStream, Zeghidour et al. 2021, arXiv 2107.03312,
Sec. 3.3), applied here to the two levels of the hierarchy. It was preferred to a second, top-only decoding of
every clip as an extra loss: that doubled the time of a `tiny` training step (measured over 20 steps), where
level dropout costs nothing, since a dropped clip is decoded once, from the top alone. In a 600-step run of a
narrow VQ-VAE on 8×32×32 moving shapes (tests/training/test_vqvae_levels.py), level dropout 0.25 made swapping
the top codes cost 1.85-5.40 dB (seeds 0-3 and 7), the old objective 0.07 and 0.14 dB (seeds 0 and 1). Zeros
stand in for the dropped vectors exactly as in `decode_codes(top, None)`, so a top-only decode is what training
optimised. The dropped clips are drawn stratified (`level_dropout_mask`): each clip with probability
`level_dropout`, but always floor or ceil of that share of the batch. With an independent coin per clip, batches
of 6 at rate 0.2 dropped no clip in a quarter of the steps, and the `tiny` preset's top level decoded alone to
17.99, 21.41, 22.10, 17.82 and 22.10 dB at seeds 0-4 on one CPU (the same seed 0 gave 21.83 on another);
stratified, 22.58, 22.06, 22.01, 21.10 and 21.72 dB (docs/levels.md, "Seeds").

Top slowness (`top_slowness`, off by default): the training loss gains that weight times `top_change`, the mean
squared change of the top latents (before quantisation) from one latent frame to the next, relative to their
variance. It is the slowness objective of Slow Feature Analysis (Wiskott & Sejnowski 2002, "Slow Feature
Analysis: Unsupervised Learning of Invariances", Neural Computation 14(4)), whose unit-variance constraint the
ratio stands in for, and the temporal coherence of Mobahi, Collobert & Weston (2009, "Deep Learning from Temporal
Coherence in Video", ICML): what stays put over time goes to the top codes, what changes fast to the bottom
codes. Without it the demo's model changes 78% of its top codes from one latent frame to the next on its held-out
clips (`vqvid reconstruct --levels`; the background's drifting wave is coded there). At weight 0.02 about half
change and the top prior's bits per code fall from 4.04 to about 3, but the top level decoded alone loses quality
in some runs, and the shapes that prediction keeps do not reliably rise (docs/prediction.md, "Slow top codes").

Every quantiser is an `EMAQuantizer` (VQ-VAE, van den Oord et al. 2017, arXiv 1711.00937); residual blocks are
those of VQ-VAE Sec. 4.1 (activation, 3×3 conv, activation, 1×1 conv), in 3D. The activation is SiLU (swish,
Ramachandran et al. 2017, arXiv 1710.05941), as in VQGAN's encoder and decoder (Esser et al. 2021, arXiv
2012.09841), unless the config asks for the papers' ReLU: on moving-shapes clips SiLU reaches a given PSNR in
about half the steps, which matters for short CPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from vqvid.models.quantize import EMAQuantizer, QuantizerOutput

# Input sizes must divide into the top grid: time by 4, height and width by 8.
TIME_FACTOR = 4
SPACE_FACTOR = 8
ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU}
# Kernels (frames, height, width) of the convolutions that mix neighbours in a residual block, in order.
BLOCKS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "3d": ((3, 3, 3),),
    "spatial": ((1, 3, 3),),
    "factorised": ((1, 3, 3), (3, 1, 1)),
}


@dataclass
class VQVAEConfig:
    """Everything that shapes a `VQVAE`; presets, YAML files and overrides all fill this in."""

    in_channels: int = 3  # RGB; the data contract is B×3×T×H×W
    channels: int = 128  # width of encoders and decoders; even, as the layers next to the pixels use half
    res_channels: int = 32  # hidden width inside residual blocks: a bottleneck keeps 3×3×3 convolutions cheap
    n_res_blocks: int = 2  # residual blocks in each encoder and decoder
    embed_dim: int = 32  # size of a codebook vector; small vectors keep nearest-neighbour search meaningful
    num_codes: int = 512  # codes per level: 9 bits per position before entropy coding
    # "conditioned": VQ-VAE-2, the bottom quantiser sees the decoded top; "independent": it does not.
    hierarchy: Literal["conditioned", "independent"] = "conditioned"
    beta: float = 0.25  # commitment weight of Eq. 3 in VQ-VAE; 0.25 is the paper's value
    decay: float = 0.99  # EMA decay of both codebooks (VQ-VAE App. A.1)
    # Codes won by fewer vectors per step than this (EMA, summed over devices) move onto fresh encoder
    # outputs; 0 turns restarts off.
    restart_threshold: float = 1.0
    # "silu" learns markedly faster on short runs; "relu" is VQ-VAE's and VQ-VAE-2's choice, kept for fidelity.
    activation: Literal["silu", "relu"] = "silu"
    # Probability that a training clip's bottom vectors are zeroed before the decoder (level dropout, see the
    # module docstring; drawn stratified over the batch, `level_dropout_mask`), so that the top level alone must
    # decode to the coarse video; 0 is plain VQ-VAE-2, whose top level can end up carrying nothing.
    level_dropout: float = 0.25
    # Weight of a dropped clip's reconstruction loss, relative to a clip decoded from both levels. A top-only
    # decode errs several times more than a full one, so at weight 1 a quarter of the clips dropped carries
    # about half of the reconstruction loss; a lower weight trades top-only quality for reconstruction
    # (docs/levels.md measures the trade).
    top_only_weight: float = 1.0
    # Weight of `top_change` (see the module docstring) in the training loss: makes the top codes change slowly
    # over time, so that they cost the top prior fewer bits; 0 (the default) leaves the loss as VQ-VAE-2's.
    top_slowness: float = 0.0
    # The convolution that mixes neighbours in each residual block (see `ResBlock3d`): "3d" is 3×3×3; "spatial"
    # is 1×3×3, the original thesis code's (VQ-VAE-2's 2D blocks made 3D); "factorised" is 1×3×3 then 3×1×1
    # (R(2+1)D). "3d" is the default because it is what every model made before this field existed used.
    block: Literal["3d", "spatial", "factorised"] = "3d"
    # Frames seen by the two convolutions that resample space only (the bottom encoder's second, stride 1×2×2,
    # and the decoder's first transposed one): 3 also mixes neighbouring frames there (every model made before
    # this field existed), 1 makes each a single space-only strided convolution at a third of the cost.
    resample_frames: int = 3
    # True: every convolution on the way from the video to the codes sees only the current and earlier frames
    # (`TimeCausalConv3d`), so the codes of the first C frames (C a multiple of 4) are the same whether the encoder
    # sees the whole clip or those C frames alone. The priors are trained on whole clips' codes and, in
    # prediction, conditioned on the context's codes; with a centred encoder 20% of the context's top codes
    # differ between the two (`padding_cost`), because they saw frames after the context in training.
    causal_encoder: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "channels", "res_channels", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.channels % 2:
            raise ValueError(f"model.channels must be even (outermost layers use half), got {self.channels}")
        if self.n_res_blocks < 0:
            raise ValueError(f"model.n_res_blocks must be >= 0, got {self.n_res_blocks}")
        if self.num_codes < 2:
            raise ValueError(f"model.num_codes must be >= 2, got {self.num_codes}")
        if self.hierarchy not in ("conditioned", "independent"):
            raise ValueError(
                f"model.hierarchy must be 'conditioned' or 'independent', got {self.hierarchy!r}"
            )
        if self.beta < 0:
            raise ValueError(f"model.beta must be >= 0, got {self.beta}")
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"model.decay must be in [0, 1), got {self.decay}")
        if self.restart_threshold < 0:
            raise ValueError(f"model.restart_threshold must be >= 0, got {self.restart_threshold}")
        if not 0.0 <= self.level_dropout < 1.0:
            raise ValueError(f"model.level_dropout must be in [0, 1), got {self.level_dropout}")
        if not 0.0 < self.top_only_weight <= 1.0:
            raise ValueError(f"model.top_only_weight must be in (0, 1], got {self.top_only_weight}")
        if not self.top_slowness >= 0:
            raise ValueError(f"model.top_slowness must be >= 0, got {self.top_slowness}")
        if self.block not in BLOCKS:
            raise ValueError(f"model.block must be one of {list(BLOCKS)}, got {self.block!r}")
        if self.resample_frames not in (1, 3):
            raise ValueError(f"model.resample_frames must be 1 or 3, got {self.resample_frames}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")


class Codes(NamedTuple):
    """The discrete representation of a batch of clips (B, 3, T, H, W)."""

    top: Tensor  # (B, T/4, H/8, W/8) int64
    bottom: Tensor  # (B, T/2, H/4, W/4) int64


class GridShapes(NamedTuple):
    """Code grid sizes (frames, height, width) of each level for one clip size."""

    top: tuple[int, int, int]  # (T/4, H/8, W/8)
    bottom: tuple[int, int, int]  # (T/2, H/4, W/4)


class VQVAEOutput(NamedTuple):
    # (B, 3, T, H, W), trained towards [-1, 1] but not bounded: clamp before display. In training mode, clips
    # whose bottom level was dropped (`level_dropout`) are decoded from their top codes alone.
    reconstruction: Tensor
    commitment_loss: Tensor  # scalar, sum of both levels' commitment losses
    top: QuantizerOutput  # quantized (B, embed_dim, T/4, H/8, W/8), codes (B, T/4, H/8, W/8)
    bottom: QuantizerOutput  # quantized (B, embed_dim, T/2, H/4, W/4), codes (B, T/2, H/4, W/4)
    # (B,) float: 1 for a clip decoded from both levels, 0 for one whose bottom level was dropped
    bottom_kept: Tensor
    # scalar: the top latents' change from one latent frame to the next, relative to their variance
    # (`top_change`); the loss weighs it by `top_slowness`
    top_change: Tensor


class TimeCausalConv3d(nn.Conv3d):
    """A Conv3d padded in time on the left only, by kernel − stride frames: output frame j sees input frames up
    to s·j + s − 1, the last of the s frames it stands for, and none after. Height and width are padded as
    given (`padding` is (0, pad_h, pad_w)). Its parameters are a Conv3d's, under the same names."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int],
                 stride: int | tuple[int, int, int] = 1, padding: int | tuple[int, int, int] = 0) -> None:
        kernel, stride, padding = (v if isinstance(v, tuple) else (v,) * 3 for v in (kernel, stride, padding))
        if kernel[0] < stride[0]:
            raise ValueError(f"a causal convolution needs a time kernel of at least its stride, got kernel "
                             f"{kernel[0]}, stride {stride[0]}")
        super().__init__(in_channels, out_channels, kernel, stride, (0, *padding[1:]))
        self.time_padding = kernel[0] - stride[0]

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W) -> (B, C', T / stride, ...)
        return super().forward(nn.functional.pad(x, (0, 0, 0, 0, self.time_padding, 0)))


def _conv3d(causal: bool, in_channels: int, out_channels: int, kernel: int | tuple[int, int, int],
            stride: int | tuple[int, int, int] = 1, padding: int | tuple[int, int, int] = 0) -> nn.Conv3d:
    """A Conv3d, or with `causal` a `TimeCausalConv3d` of the same kernel, stride and spatial padding."""
    if causal:
        return TimeCausalConv3d(in_channels, out_channels, kernel, stride, padding)
    return nn.Conv3d(in_channels, out_channels, kernel, stride, padding)


class ResBlock3d(nn.Module):
    """x + conv1x1(act(conv(act(x)))), VQ-VAE Sec. 4.1 in 3D, where conv is one of `BLOCKS`:

    - "3d": a 3×3×3 convolution;
    - "spatial": 1×3×3, space only; time is mixed only by the strided convolutions around the blocks;
    - "factorised": 1×3×3, activation, 3×1×1, the (2+1)D convolution of R(2+1)D (Tran et al. 2018, "A Closer
      Look at Spatiotemporal Convolutions for Action Recognition", arXiv 1711.11248, Sec. 3.5), at the same
      hidden width, so it sees 3×3×3 neighbours at 12/27 of the multiply-adds of a 3×3×3 convolution.
    """

    def __init__(self, channels: int, hidden: int, activation: str = "silu", block: str = "3d",
                 causal: bool = False) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = []
        width = channels
        for kernel in BLOCKS[block]:
            layers += [act(), _conv3d(causal, width, hidden, kernel, padding=tuple(k // 2 for k in kernel))]
            width = hidden
        self.block = nn.Sequential(*layers, act(), nn.Conv3d(hidden, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)  # (B, C, T, H, W)


def _res_stack(config: VQVAEConfig, causal: bool = False) -> list[nn.Module]:
    c, hidden = config.channels, config.res_channels
    blocks = (ResBlock3d(c, hidden, config.activation, config.block, causal) for _ in range(config.n_res_blocks))
    return [*blocks, ACTIVATIONS[config.activation]()]


def bottom_encoder(config: VQVAEConfig) -> nn.Sequential:
    """(B, in_channels, T, H, W) -> (B, channels, T/2, H/4, W/4)."""
    c, act, f, causal = config.channels, ACTIVATIONS[config.activation], config.resample_frames, config.causal_encoder
    return nn.Sequential(
        _conv3d(causal, config.in_channels, c // 2, 4, stride=2, padding=1),  # halves T, H, W
        act(),
        _conv3d(causal, c // 2, c, (f, 4, 4), stride=(1, 2, 2), padding=(f // 2, 1, 1)),  # halves H, W
        act(),
        _conv3d(causal, c, c, 3, padding=1),
        *_res_stack(config, causal),
    )


def top_encoder(config: VQVAEConfig) -> nn.Sequential:
    """(B, channels, T/2, H/4, W/4) -> (B, channels, T/4, H/8, W/8)."""
    c, act, causal = config.channels, ACTIVATIONS[config.activation], config.causal_encoder
    return nn.Sequential(
        _conv3d(causal, c, c // 2, 4, stride=2, padding=1),
        act(),
        _conv3d(causal, c // 2, c, 3, padding=1),
        *_res_stack(config, causal),
    )


def top_decoder(config: VQVAEConfig) -> nn.Sequential:
    """Top vectors (B, embed_dim, T/4, H/8, W/8) -> (B, embed_dim, T/2, H/4, W/4), to condition the bottom.
    With `causal_encoder` it is on the way to the codes, so it is causal too: bottom latent frame j sees top
    latent frames up to j // 2 (a time kernel of 2 at stride 2 doubles each frame on its own)."""
    c, causal = config.channels, config.causal_encoder
    return nn.Sequential(
        _conv3d(causal, config.embed_dim, c, 3, padding=1),
        *_res_stack(config, causal),
        nn.ConvTranspose3d(c, config.embed_dim, (2, 4, 4), stride=2, padding=(0, 1, 1)) if causal
        else nn.ConvTranspose3d(c, config.embed_dim, 4, stride=2, padding=1),
    )


def decoder(config: VQVAEConfig) -> nn.Sequential:
    """Both levels on the bottom grid (B, 2 * embed_dim, T/2, H/4, W/4) -> video (B, in_channels, T, H, W)."""
    c, act, f = config.channels, ACTIVATIONS[config.activation], config.resample_frames
    return nn.Sequential(
        nn.Conv3d(2 * config.embed_dim, c, 3, padding=1),
        *_res_stack(config),
        nn.ConvTranspose3d(c, c // 2, (f, 4, 4), stride=(1, 2, 2), padding=(f // 2, 1, 1)),  # doubles H, W
        act(),
        nn.ConvTranspose3d(c // 2, config.in_channels, 4, stride=2, padding=1),  # doubles T, H, W
    )


def level_dropout_mask(batch: int, rate: float, device: torch.device | str | None = None) -> Tensor:
    """(batch,) float: 0 for the clips whose bottom level is dropped, 1 for the others. Stratified: floor(rate ×
    batch) clips, one more with probability equal to the fraction left over, chosen at random; so every clip is
    dropped with probability `rate`, as with an independent coin per clip, but the share of a batch decoded from
    the top alone hardly varies from step to step (batch 6 at rate 0.2: one or two clips, where independent coins
    drop none in 26% of steps and three or more in 10%)."""
    expected = rate * batch
    dropped = int(expected) + int(torch.rand(()).item() < expected - int(expected))
    kept = torch.ones(batch, device=device)
    kept[torch.randperm(batch, device=device)[:dropped]] = 0
    return kept


def top_change(latent: Tensor) -> Tensor:
    """How much `latent` (B, C, T, H, W) changes from one frame to the next: the mean squared difference of
    consecutive frames over the mean squared deviation from each channel's mean (over batch, time and space).
    0 when nothing changes over time, about 2 when consecutive frames are unrelated, and unchanged by scaling
    `latent`, so that an encoder cannot lower it by shrinking its output. A scalar, 0 for a single frame."""
    latent = latent.float()
    if latent.shape[2] < 2:
        return latent.new_zeros(())
    change = (latent[:, :, 1:] - latent[:, :, :-1]).square().mean()
    spread = (latent - latent.mean(dim=(0, 2, 3, 4), keepdim=True)).square().mean()
    return change / spread.clamp(min=1e-12)


def _code_shape(codes: Tensor, level: str) -> tuple[int, int, int, int]:
    if codes.dim() != 4:
        raise ValueError(f"{level} codes must be (B, T, H, W), got shape {tuple(codes.shape)}")
    b, t, h, w = codes.shape
    return b, t, h, w


class VQVAE(nn.Module):
    """Hierarchical 3D VQ-VAE; see the module docstring for the pipeline and shapes."""

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim

        def quantizer() -> EMAQuantizer:
            return EMAQuantizer(d, config.num_codes, decay=config.decay, beta=config.beta,
                                restart_threshold=config.restart_threshold)

        self.bottom_encoder = bottom_encoder(config)
        self.top_encoder = top_encoder(config)
        self.top_pre_quantize = nn.Conv3d(config.channels, d, 1)
        self.top_quantizer = quantizer()
        conditioned = config.hierarchy == "conditioned"
        # Only the conditioned hierarchy decodes the top before quantising the bottom (VQ-VAE-2 Fig. 2a).
        self.top_decoder = top_decoder(config) if conditioned else None
        self.bottom_pre_quantize = nn.Conv3d(config.channels + (d if conditioned else 0), d, 1)
        self.bottom_quantizer = quantizer()
        self.top_upsample = nn.ConvTranspose3d(d, d, 4, stride=2, padding=1)
        self.decoder = decoder(config)

    @staticmethod
    def grid_shapes(frames: int, height: int, width: int) -> GridShapes:
        """Code grid sizes of a clip of `frames` × `height` × `width` pixels."""
        sizes_fit = frames % TIME_FACTOR == 0 and height % SPACE_FACTOR == 0 and width % SPACE_FACTOR == 0
        if min(frames, height, width) < 1 or not sizes_fit:
            raise ValueError(
                f"clip size must have frames a multiple of {TIME_FACTOR} and height, width multiples of "
                f"{SPACE_FACTOR} (e.g. 16×64×64 or 16×256×256), got {frames}×{height}×{width}"
            )
        return GridShapes(
            top=(frames // 4, height // 8, width // 8),
            bottom=(frames // 2, height // 4, width // 4),
        )

    def forward(self, video: Tensor) -> VQVAEOutput:
        """Reconstruct `video` (B, 3, T, H, W) in [-1, 1]; in training mode also updates both codebooks."""
        self._check_video(video)
        bottom_features = self.bottom_encoder(video)  # (B, channels, T/2, H/4, W/4)
        top_latent = self.top_pre_quantize(self.top_encoder(bottom_features))  # (B, embed_dim, T/4, H/8, W/8)
        top = self.top_quantizer(top_latent)
        bottom = self.bottom_quantizer(self._bottom_latent(bottom_features, top.quantized))
        bottom_quantized = bottom.quantized  # (B, embed_dim, T/2, H/4, W/4)
        kept = torch.ones(video.shape[0], device=video.device)  # (B,)
        if self.training and self.config.level_dropout > 0:
            # Level dropout: whole clips lose their bottom vectors, as in `decode_codes(top, None)`.
            kept = level_dropout_mask(video.shape[0], self.config.level_dropout, video.device)
            bottom_quantized = bottom_quantized * kept.view(-1, 1, 1, 1, 1).to(bottom_quantized.dtype)
        return VQVAEOutput(
            reconstruction=self._decode(top.quantized, bottom_quantized),
            commitment_loss=top.commitment_loss + bottom.commitment_loss,
            top=top,
            bottom=bottom,
            bottom_kept=kept,
            top_change=top_change(top_latent),
        )

    @torch.no_grad()
    def encode(self, video: Tensor) -> Codes:
        """Codes of `video` (B, 3, T, H, W) in [-1, 1]; never updates the codebooks."""
        self._check_video(video)
        bottom_features = self.bottom_encoder(video)  # (B, channels, T/2, H/4, W/4)
        top = self._top_codes(bottom_features)
        top_quantized = self.top_quantizer.embed_codes(top)  # (B, embed_dim, T/4, H/8, W/8)
        bottom = self.bottom_quantizer.nearest_codes(self._bottom_latent(bottom_features, top_quantized))
        return Codes(top=top, bottom=bottom)

    @torch.no_grad()
    def encode_top(self, video: Tensor) -> Tensor:
        """The top codes (B, T/4, H/8, W/8) that `encode` gives `video`, without the bottom level's work (about
        half of `encode`'s time at the `tiny` preset's size): the context reader's targets."""
        self._check_video(video)
        return self._top_codes(self.bottom_encoder(video))

    def _top_codes(self, bottom_features: Tensor) -> Tensor:
        return self.top_quantizer.nearest_codes(self.top_pre_quantize(self.top_encoder(bottom_features)))

    def decode_codes(self, top: Tensor | None, bottom: Tensor | None) -> Tensor:
        """Video (B, 3, T, H, W) from top codes (B, T/4, H/8, W/8) and bottom codes (B, T/2, H/4, W/4).

        Either level may be None: zeros then stand in for its quantised vectors, which shows what the other
        level carries alone. The output is trained towards [-1, 1] but not bounded; clamp before display.
        """
        if top is None and bottom is None:
            raise ValueError("decode_codes needs top codes, bottom codes or both; got neither")
        d = self.config.embed_dim
        if top is not None:
            b, t, h, w = _code_shape(top, "top")
            if bottom is not None and tuple(bottom.shape) != (b, 2 * t, 2 * h, 2 * w):
                raise ValueError(f"bottom codes must be (B, 2T, 2H, 2W) for top codes (B, T, H, W), i.e. "
                                 f"{(b, 2 * t, 2 * h, 2 * w)}, got {tuple(bottom.shape)}")
            t, h, w = 2 * t, 2 * h, 2 * w
        else:
            b, t, h, w = _code_shape(bottom, "bottom")
            if t % 2 or h % 2 or w % 2:
                raise ValueError(f"bottom codes must have even T, H, W (twice the top grid), got shape "
                                 f"{tuple(bottom.shape)}")
        if top is None:
            top_quantized = torch.zeros((b, d, t // 2, h // 2, w // 2), device=bottom.device)
        else:
            top_quantized = self.top_quantizer.embed_codes(top)  # (B, D, T/4, H/8, W/8)
        if bottom is None:
            bottom_quantized = torch.zeros((b, d, t, h, w), device=top.device)
        else:
            bottom_quantized = self.bottom_quantizer.embed_codes(bottom)  # (B, D, T/2, H/4, W/4)
        return self._decode(top_quantized, bottom_quantized)

    def _bottom_latent(self, bottom_features: Tensor, top_quantized: Tensor) -> Tensor:
        """Input of the bottom quantiser, (B, embed_dim, T/2, H/4, W/4)."""
        if self.top_decoder is None:
            return self.bottom_pre_quantize(bottom_features)
        top_decoded = self.top_decoder(top_quantized)  # (B, embed_dim, T/2, H/4, W/4)
        return self.bottom_pre_quantize(torch.cat([bottom_features, top_decoded], 1))

    def _decode(self, top_quantized: Tensor, bottom_quantized: Tensor) -> Tensor:
        top_upsampled = self.top_upsample(top_quantized)  # (B, D, T/2, H/4, W/4)
        return self.decoder(torch.cat([top_upsampled, bottom_quantized], 1))

    def _check_video(self, video: Tensor) -> None:
        channels = self.config.in_channels
        if video.dim() != 5 or video.shape[1] != channels:
            raise ValueError(
                f"video must be (B, {channels}, T, H, W) with T a multiple of {TIME_FACTOR} and H, W "
                f"multiples of {SPACE_FACTOR}, got shape {tuple(video.shape)}"
            )
        self.grid_shapes(*video.shape[2:])
        if not video.is_floating_point():
            raise ValueError(f"video must be floating point in [-1, 1], got {video.dtype} (8-bit frames x map to "
                             "x / 127.5 - 1: `vqvid.data.video.from_uint8_frames`)")
