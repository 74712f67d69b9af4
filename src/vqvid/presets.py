"""The registry of named configurations that every `--preset` option reads.

- `tiny`: CPU-sized, for the demo and the tests: 16 frames of 64×64 -> top codes 4×8×8, bottom codes 8×16×16.
- `thesis`: the original thesis's run: 16 frames of 256×256, 128 channels, 2 residual blocks, 512 codes,
  embedding width 32, lr 1e-3 -> top codes 4×32×32, bottom codes 8×64×64; its top prior has 256 filters,
  6 blocks of 1 residual block, key 16, value 128. Its VQ-VAE's blocks are vqvid's faster factorised design
  at residual width 64 (the original convolved 1×3×3 at width 128; see the comment in `_thesis`).

A preset is a starting point: `--config FILE` (YAML) and `key=value` overrides change any field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vqvid.data.video import ClipSpec
from vqvid.models.pixelsnail import PixelSNAILConfig
from vqvid.models.reader import ReaderConfig
from vqvid.models.vqvae import VQVAEConfig
from vqvid.training.config import TrainConfig


@dataclass
class VQVAERun:
    """Everything a VQ-VAE training run needs besides its data source."""

    model: VQVAEConfig = field(default_factory=VQVAEConfig)
    data: ClipSpec = field(default_factory=ClipSpec)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class PriorRun:
    """Everything a prior training run needs besides its code store (which fixes the grid shape)."""

    model: PixelSNAILConfig
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ReaderRun:
    """Everything a context reader's training run needs besides its VQ-VAE and video (which fix its clips,
    codes and grid)."""

    model: ReaderConfig = field(default_factory=ReaderConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Preset:
    description: str
    vqvae: VQVAERun
    top: PriorRun
    bottom: PriorRun
    reader: ReaderRun = field(default_factory=ReaderRun)

    def prior(self, level: str) -> PriorRun:
        if level not in ("top", "bottom"):
            raise ValueError(f"--level must be 'top' or 'bottom', got {level!r}")
        return self.top if level == "top" else self.bottom


def _tiny() -> Preset:
    return Preset(
        description="CPU demo: 16×64×64 clips, small networks, minutes on 2 cores",
        vqvae=VQVAERun(
            # Narrow (32 channels) so that 800 steps fit in under 5 CPU minutes; EMA decay 0.95 lets the
            # codebooks follow the fast-moving encoder of a short run; cosine annealing settles it at the end.
            # Factorised blocks: in the demo's 800-step run on its held-out clips, 26.03 dB from both levels,
            # 22.84 from the top alone, 7.16 dB top-swap cost, against 25.34, 21.72 and 5.53 with 3×3×3 blocks,
            # at the same step time (docs/levels.md). Batches of 6 clips do as well as 8 in this short run
            # (25.74 dB against 25.67) in 70% of the time; level dropout 0.2 rather than the
            # default 0.25 buys back reconstruction (26.08 dB) for some top-only quality (21.87 dB); drawn
            # stratified, the top level decodes alone to 21.10-22.58 dB at seeds 0-4 on another CPU, where
            # independent coins left it below the mean colour at two of the five (docs/levels.md, "Seeds"). 512 codes:
            # 128 make the codes cheaper to predict but reconstruct at 25.44 dB, 20.56 from the top alone, and
            # keep no more of the shapes in prediction (docs/prediction.md).
            model=VQVAEConfig(channels=32, res_channels=16, n_res_blocks=1, embed_dim=16, num_codes=512,
                              decay=0.95, block="factorised", level_dropout=0.2),
            data=ClipSpec(frames=16, stride=8, size=64),
            train=TrainConfig(batch_size=6, lr=2e-3, max_steps=800, val_every=200, val_batches=2,
                              warmup_steps=20, lr_schedule="cosine", num_workers=1, log_every=10),
        ),
        top=PriorRun(
            # lr 4e-3: on the demo's codes of 2,048 clips, 600 steps reach 4.27 held-out bits per code against
            # 4.39 at 2e-3 (in the same time); 8e-3 is unstable (4.82). The tied head (logits from the code
            # embeddings, which start from the codebook) reaches 4.13 in the same time; 4 times the batch 3.78 in
            # 2.7 times the time; twice the width or the depth no better than 4.26 (docs/prediction.md, "Tied
            # heads"). On all 64 held-out clips, tied 4.04, untied 4.19.
            model=PixelSNAILConfig(shape=(4, 8, 8), channels=64, n_blocks=2, n_res_blocks=1, attention=True,
                                   n_heads=2, key_channels=16, value_channels=32, dropout=0.1, tied_head=True),
            train=TrainConfig(batch_size=4, lr=4e-3, max_steps=600, val_every=200, val_batches=8,
                              warmup_steps=20, lr_schedule="cosine", num_workers=0, log_every=10),
        ),
        bottom=PriorRun(
            # 2048 positions per clip: half the width of the top prior keeps its training near two minutes on
            # 2 cores. Code embeddings start from the VQ-VAE's codebooks (codebook_init). A short run underfits,
            # so no dropout, and many small batches beat fewer large ones: on the demo's held-out codes 800 steps
            # of 2 clips reach 3.4 bits per code, 250 steps of 8 clips (which take longer) 4.1. lr 8e-3: 3.5.
            # Tied head as the top prior's: 3.36 bits per code against 3.38. The conditioning stack normalised
            # (condition_norm): without it the demo's bottom prior at seed 0 ignored the top codes (3.411 bits
            # per code given its clips' own or another clip's), with it 3.232 against 4.149, and its samples
            # given the true top codes keep 68% of the held-out shapes instead of 45% (docs/prediction.md).
            model=PixelSNAILConfig(shape=(8, 16, 16), channels=32, n_blocks=2, n_res_blocks=1, attention=False,
                                   embed_dim=16, dropout=0.0, condition_num_codes=512, condition_shape=(4, 8, 8),
                                   condition_channels=32, tied_head=True, condition_norm=True),
            train=TrainConfig(batch_size=2, lr=4e-3, max_steps=800, val_every=200, val_batches=8,
                              warmup_steps=20, lr_schedule="cosine", num_workers=0, log_every=10),
        ),
        reader=ReaderRun(
            # Patch stem, batch 16, lr 3e-3, 600 steps on the priors' 2,048 clips: about 100 s here. On the demo's 8
            # held-out clips (bench_pixel_context.py, most likely codes, the demo's bottom prior) 54% of the shapes
            # kept in place and 77% as themselves; the conv stem at batch 8 for 400 steps 45-46% and 68-72% in about
            # the same time; lr 1e-3 51% and 79%, 6e-3 unstable (docs/prediction.md, "The context reader in vqvid").
            model=ReaderConfig(context=8, frames=16, channels=96, layers=6, stem="patch"),
            train=TrainConfig(batch_size=16, lr=3e-3, max_steps=600, val_every=200, val_batches=2,
                              warmup_steps=20, lr_schedule="cosine", num_workers=1, log_every=10),
        ),
    )


def _thesis() -> Preset:
    return Preset(
        description="the thesis's run: 16×256×256 clips at 10 fps, 128 channels, 512 codes",
        vqvae=VQVAERun(
            # Factorised residual blocks (1×3×3 then 3×1×1) of width 64, space-only resampling over 3 frames as
            # before (README, "Block design"). A step at 16×256×256 takes 0.86-0.88× the original thesis design's
            # (1×3×3 blocks of width 128, 3.98 M parameters; bench_vqvae.py, same run), where the earlier 3×3×3
            # blocks of width 32 took 1.41×. In 400-step `tiny` runs this design reached 3.0 dB more held-out
            # PSNR than 3×3×3 blocks; resampling over 1 frame would be faster still (0.70×) but cost 1.3 dB.
            # Width 64 is half the channels, the ratio at which the `tiny` designs were compared; the
            # original's 128 costs more per step for no measured gain.
            model=VQVAEConfig(channels=128, res_channels=64, n_res_blocks=2, embed_dim=32, num_codes=512,
                              block="factorised", resample_frames=3),
            data=ClipSpec(frames=16, stride=8, size=256, fps=10.0),
            train=TrainConfig(batch_size=8, lr=1e-3, max_steps=100_000, val_every=2_000, val_batches=8,
                              num_workers=8),
        ),
        top=PriorRun(
            model=PixelSNAILConfig(shape=(4, 32, 32), channels=256, n_blocks=6, n_res_blocks=1, attention=True,
                                   n_heads=1, key_channels=16, value_channels=128, dropout=0.1),
            train=TrainConfig(batch_size=16, lr=3e-4, max_steps=100_000, val_every=2_000, num_workers=4),
        ),
        bottom=PriorRun(
            # condition_norm as in `tiny`: an unnormalised conditioning stack can saturate and ignore the top codes.
            model=PixelSNAILConfig(shape=(8, 64, 64), channels=256, n_blocks=6, n_res_blocks=1, attention=False,
                                   dropout=0.1, condition_num_codes=512, condition_shape=(4, 32, 32),
                                   condition_norm=True),
            train=TrainConfig(batch_size=8, lr=3e-4, max_steps=100_000, val_every=2_000, num_workers=4),
        ),
        reader=ReaderRun(
            # The `tiny` reader's design, twice as wide for clips 16 times the area; its training is not tuned.
            model=ReaderConfig(context=8, frames=16, channels=192, layers=6, stem="patch"),
            train=TrainConfig(batch_size=8, lr=1e-3, max_steps=20_000, val_every=2_000, warmup_steps=500,
                              lr_schedule="cosine", num_workers=8),
        ),
    )


PRESETS = {"tiny": _tiny, "thesis": _thesis}


def get_preset(name: str) -> Preset:
    """A fresh copy of a named preset; unknown names list the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()
