"""Vector quantisation with an exponential-moving-average codebook.

`EMAQuantizer` is the quantiser of VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation
Learning", arXiv 1711.00937): every encoder vector is replaced by its nearest codebook vector, gradients pass
straight through to the encoder (Sec. 3.2), the commitment loss beta * ||z_e(x) - sg[e]||² keeps the encoder
close to its codes (Eq. 3), and the codebook is not learnt by gradient but as exponential moving averages of
the vectors assigned to each code (App. A.1, Eqs. 6-8).

Two additions keep a 512-code codebook alive and make the module safe to train at scale:
- Dead-code restart: a code whose moving-average count falls below `restart_threshold` is moved onto a random
  encoder output of the current batch (as Jukebox does, Dhariwal et al. 2020, arXiv 2005.00341), so the
  codebook does not collapse onto the few codes that won the first steps.
- Under `torch.distributed` (Lightning DDP) the batch statistics are summed over all ranks before the update,
  and restart vectors are drawn from the encoder outputs of all ranks alike: every rank holds the same
  codebook, the one a single process fed all ranks' batches would hold. This all-reduce is what keeps the ranks
  in agreement; the trainer does not broadcast rank 0's buffers over them (see `training.runner`).

Codebook and statistics are float32 buffers, and distances and updates run in float32 with autocast off:
under bf16-mixed precision, bf16 distances pick wrong codes and bf16 moving averages lose most of each
(1 - decay)-sized update to rounding. The distance product also runs in full float32 when a user allows TF32
(`torch.set_float32_matmul_precision("high")`): TF32 keeps 10 bits of mantissa, enough to pick a farther code
when two codes are nearly as close.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vqvid.precision import full_precision_float32

# Distances computed at once by the nearest-code search on a CPU: 2M float32 (8 MB), a block that stays in cache.
_DISTANCE_BLOCK = 1 << 21


class QuantizerOutput(NamedTuple):
    """What `EMAQuantizer.forward` returns; scalars are 0-d tensors."""

    quantized: Tensor  # (B, C, T, H, W) codebook vectors, float32; the gradient passes straight to the input
    codes: Tensor  # (B, T, H, W) int64 in [0, num_codes)
    commitment_loss: Tensor  # beta * mean of (x - sg(e))², the third term of Eq. 3
    # Both statistics describe this batch, or in training under DDP all ranks' batches of this step.
    perplexity: Tensor  # exp(entropy of the code histogram): num_codes when all are used equally
    usage: Tensor  # fraction of the codebook used at least once


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class EMAQuantizer(nn.Module):
    """Nearest-neighbour quantiser over `num_codes` vectors of size `dim`, with an EMA-updated codebook.

    Input and output are channel-first grids (B, C, T, H, W) with C = `dim`. The codebook changes only in
    training mode, after the batch has been quantised with the codebook as it was.
    """

    embed: Tensor
    cluster_size: Tensor
    embed_sum: Tensor

    def __init__(
        self,
        dim: int,
        num_codes: int,
        decay: float = 0.99,
        beta: float = 0.25,
        eps: float = 1e-5,
        restart_threshold: float = 1.0,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"EMAQuantizer: dim must be >= 1, got {dim}")
        if num_codes < 2:
            raise ValueError(f"EMAQuantizer: num_codes must be >= 2, got {num_codes}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMAQuantizer: decay must be in [0, 1), got {decay}")
        if beta < 0:
            raise ValueError(f"EMAQuantizer: beta must be >= 0, got {beta}")
        if eps < 0:
            raise ValueError(f"EMAQuantizer: eps must be >= 0, got {eps}")
        if restart_threshold < 0:
            raise ValueError(f"EMAQuantizer: restart_threshold must be >= 0 (0 disables restarts), got "
                             f"{restart_threshold}")
        self.dim = dim
        self.num_codes = num_codes
        self.decay = decay  # gamma of App. A.1
        self.beta = beta
        self.eps = eps  # Laplace smoothing of the counts, so a rarely used code never divides by ~0
        # In units of the EMA count, i.e. vectors per step (summed over ranks under DDP).
        self.restart_threshold = restart_threshold
        embed = torch.randn(num_codes, dim)
        self.register_buffer("embed", embed)  # (K, C) the codebook, e_i
        # Every code starts as if it had been assigned one vector equal to itself: the moving averages are
        # then defined from the first step, and a code that is never used keeps its vector (its sum and count
        # decay alike).
        self.register_buffer("cluster_size", torch.ones(num_codes))  # (K,) N_i of Eq. 6, vectors per step
        self.register_buffer("embed_sum", embed.clone())  # (K, C) m_i of Eq. 7

    @property
    def codebook(self) -> Tensor:
        """The codebook, (num_codes, dim) float32."""
        return self.embed

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_codes={self.num_codes}, decay={self.decay}, beta={self.beta}, "
                f"restart_threshold={self.restart_threshold}")

    def forward(self, x: Tensor) -> QuantizerOutput:
        """Quantise `x` (B, C, T, H, W), any float dtype; in training mode, then update the codebook."""
        self._check_input(x)
        b, _, t, h, w = x.shape
        with torch.autocast(x.device.type, enabled=False):
            flat = rearrange(x, "b c t h w -> (b t h w) c").float()  # (N, C)
            codes = self._nearest(flat.detach())  # (N,)
            chosen = self.embed[codes]  # (N, C); a copy, so the update below cannot change it
            commitment_loss = self.beta * F.mse_loss(flat, chosen)
            counts = torch.bincount(codes, minlength=self.num_codes).float()  # (K,)
            if self.training:
                counts = self._update(flat.detach(), codes, counts)  # (K,) summed over ranks under DDP
        chosen = rearrange(chosen, "(b t h w) c -> b c t h w", b=b, t=t, h=h, w=w)  # (B, C, T, H, W)
        # Straight-through estimator written so that the value is exactly the codebook vector (x - x is
        # exactly 0), which makes forward's output identical to embed_codes(codes); the gradient is the
        # identity.
        quantized = chosen + (x - x.detach())  # (B, C, T, H, W)
        probs = counts / counts.sum()
        return QuantizerOutput(
            quantized=quantized,
            codes=rearrange(codes, "(b t h w) -> b t h w", b=b, t=t, h=h, w=w),
            commitment_loss=commitment_loss,
            perplexity=torch.exp(torch.special.entr(probs).sum()),
            usage=(counts > 0).float().mean(),
        )

    @torch.no_grad()
    def nearest_codes(self, x: Tensor) -> Tensor:
        """Codes (B, T, H, W) int64 of the nearest codebook vectors to `x` (B, C, T, H, W); never updates."""
        self._check_input(x)
        b, _, t, h, w = x.shape
        with torch.autocast(x.device.type, enabled=False):
            codes = self._nearest(rearrange(x, "b c t h w -> (b t h w) c").float())  # (N,)
        return rearrange(codes, "(b t h w) -> b t h w", b=b, t=t, h=h, w=w)

    def embed_codes(self, codes: Tensor) -> Tensor:
        """Codebook vectors (B, C, T, H, W) float32 of integer `codes` (B, T, H, W) in [0, num_codes)."""
        integer = not (codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool)
        if codes.dim() != 4 or not integer:
            raise ValueError(f"codes must be an integer tensor (B, T, H, W), got {codes.dtype} of shape "
                             f"{tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise ValueError(f"codes must lie in [0, {self.num_codes}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return rearrange(F.embedding(codes.long(), self.embed), "b t h w c -> b c t h w")

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.dim:
            raise ValueError(f"EMAQuantizer expects (B, {self.dim}, T, H, W), got shape {tuple(x.shape)}")

    def _nearest(self, flat: Tensor) -> Tensor:
        """Index (N,) of the nearest code to each row of `flat` (N, C) float32."""
        # ||x - e||² = ||x||² - 2 x·e + ||e||²; ||x||² is the same for every code, so it cannot move the
        # argmin and is left out. One addmm per block of rows computes ||e||² - 2 x·e in a single pass into a
        # buffer small enough to stay in cache and be reused (the whole (N, K) matrix of a 64×64 bottom grid
        # is 32 MB, written and read three times over): a quarter of the time on a CPU, the same codes.
        rows = max(1, _DISTANCE_BLOCK // self.num_codes) if flat.device.type == "cpu" else flat.shape[0]
        squared = self.embed.pow(2).sum(1)  # (K,)
        codes = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)  # (N,)
        distances = flat.new_empty(min(rows, flat.shape[0]), self.num_codes)  # (rows, K)
        with full_precision_float32():
            for block, out in zip(flat.split(rows), codes.split(rows), strict=True):
                buffer = distances[: block.shape[0]]
                torch.addmm(squared, block, self.embed.t(), alpha=-2, out=buffer)
                torch.argmin(buffer, 1, out=out)
        return codes

    @torch.no_grad()
    def _update(self, flat: Tensor, codes: Tensor, counts: Tensor) -> Tensor:
        """One EMA step (App. A.1) from this batch's vectors `flat` (N, C), codes (N,) and counts (K,); returns
        the counts (K,) the step used, those of all ranks under DDP."""
        sums = torch.zeros_like(self.embed).index_add_(0, codes, flat)  # (K, C)
        if _distributed():
            stats = torch.cat([counts[:, None], sums], dim=1)  # (K, 1 + C): both statistics in one all-reduce
            dist.all_reduce(stats)
            counts, sums = stats[:, 0], stats[:, 1:]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)  # Eq. 6
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)  # Eq. 7
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total  # (K,)
        self.embed.copy_(self.embed_sum / smoothed[:, None])  # Eq. 8
        self._restart_dead_codes(flat)
        return counts

    def _restart_dead_codes(self, flat: Tensor) -> None:
        """Move codes used less than `restart_threshold` times per step onto random rows of `flat` (N, C),
        under DDP onto random rows of all ranks' `flat`."""
        dead = self.cluster_size < self.restart_threshold  # (K,), the same on every rank after the all-reduce
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        fresh = _random_rows(flat, n_dead)  # (D, C)
        self.embed[dead] = fresh
        # A restarted code counts as `restart_threshold` copies of its new vector: it survives the next step
        # only if it wins at least that many vectors, otherwise it is moved again.
        self.cluster_size[dead] = self.restart_threshold
        self.embed_sum[dead] = fresh * self.restart_threshold


def _random_rows(flat: Tensor, n: int) -> Tensor:
    """`n` rows (n, C) drawn uniformly, with replacement, from the rows of `flat` (N, C); under DDP from the
    rows of every rank's `flat` (ranks may hold different N), the same rows on every rank."""
    if not _distributed():
        return flat[torch.randint(len(flat), (n,), device=flat.device)]
    rank, world = dist.get_rank(), dist.get_world_size()
    sizes = torch.zeros(world, dtype=torch.long, device=flat.device)
    sizes[rank] = len(flat)
    dist.all_reduce(sizes)  # (W,) rows held by each rank
    picks = torch.randint(int(sizes.sum()), (n,), device=flat.device)  # indices into all ranks' rows in order
    dist.broadcast(picks, src=0)  # rank 0's draw, so that every rank moves the same codes to the same rows
    start = int(sizes[:rank].sum())
    mine = (picks >= start) & (picks < start + len(flat))  # (n,) the picks that fall on this rank's rows
    rows = torch.zeros(n, flat.shape[1], dtype=flat.dtype, device=flat.device)
    rows[mine] = flat[picks[mine] - start]
    dist.all_reduce(rows)  # each row is one rank's vector plus exact zeros from the others
    return rows
