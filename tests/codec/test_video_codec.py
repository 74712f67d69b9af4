"""The video codec: exact round trips under tiny random-weight priors, reproducible bytes, refusals.

Clips are 4 frames of 16×16: top grid 1×2×2, bottom 2×4×4, 16 codes. The priors' output layers are scaled up
so that their distributions are far from uniform: a PMF that differed between encoder and decoder, or a code
coded under the wrong context, would then show as wrong codes or a wrong rate.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from einops import rearrange

from vqvid.checkpoints import LoadedVQVAE
from vqvid.codec import FingerprintMismatchError, VQVFormatError, encode_all, quantize_pmf, read_vqv
from vqvid.codec.packing import packed_size
from vqvid.codec.video import (
    clip_geometry,
    compress,
    compress_codes,
    decompress,
    decompress_codes,
)
from vqvid.modelpack import LoadedPrior, ModelFolder
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.models.vqvae import VQVAE, Codes, VQVAEConfig
from vqvid.sampling import sample

NUM_CODES = 16
CLIP_FRAMES, SIZE = 4, 16
TOP_SHAPE, BOTTOM_SHAPE = (1, 2, 2), (2, 4, 4)
SHARPEN = 8.0  # scale of the priors' output weights: codes they draw cost about 2.3 bits instead of 4


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_vqvae(seed: int = 0) -> VQVAE:
    """A random-weight VQ-VAE whose codes follow its input. Random codebooks lie far from the encoder's
    outputs, which then all map to one code; codebooks of the encoder's own outputs on random video, as
    after a k-means initialisation, spread them over the codebook."""
    torch.manual_seed(seed)
    config = VQVAEConfig(channels=8, res_channels=4, n_res_blocks=0, embed_dim=4, num_codes=NUM_CODES)
    vqvae = VQVAE(config).eval()
    video = torch.rand(NUM_CODES // 4, 3, CLIP_FRAMES, SIZE, SIZE) * 2 - 1  # 4 top positions a clip
    for quantizer, latent in ((vqvae.top_quantizer, vqvae.top_pre_quantize),
                              (vqvae.bottom_quantizer, vqvae.bottom_pre_quantize)):
        seen = []
        hook = latent.register_forward_hook(lambda module, inputs, output, seen=seen: seen.append(output))
        vqvae.encode(video)  # the bottom latent depends on the top codebook, which is set by now
        hook.remove()
        vectors = rearrange(seen[0], "b c t h w -> (b t h w) c")  # (N, embed_dim), N >= NUM_CODES
        with torch.no_grad():
            quantizer.embed.copy_(vectors[torch.randperm(len(vectors))[:NUM_CODES]])
    return vqvae


def tiny_priors(seed: int = 0) -> tuple[PixelSNAIL, PixelSNAIL]:
    """Top p(top) over 1×2×2 and bottom p(bottom | top) over 2×4×4, with attention, in eval mode."""
    torch.manual_seed(seed)
    top = PixelSNAILConfig(num_codes=NUM_CODES, shape=TOP_SHAPE, channels=8, n_blocks=1, n_res_blocks=1,
                           attention=True, n_heads=1, key_channels=4, value_channels=4, dropout=0.0,
                           embed_dim=4)
    bottom = replace(top, shape=BOTTOM_SHAPE, condition_num_codes=NUM_CODES, condition_shape=TOP_SHAPE,
                     condition_channels=4, n_cond_res_blocks=1)
    priors = PixelSNAIL(top).eval(), PixelSNAIL(bottom).eval()
    with torch.no_grad():
        for prior in priors:
            prior.head[-1].weight.mul_(SHARPEN)
    return priors


def tiny_folder(seed: int = 0, priors: bool = True, fingerprint: str = "tiny-0001") -> ModelFolder:
    vqvae = tiny_vqvae(seed)
    loaded = LoadedVQVAE(vqvae, vqvae.config, "vqvae", {"frames": CLIP_FRAMES, "size": SIZE})
    if not priors:
        return ModelFolder(loaded, None, None, fingerprint)
    top, bottom = tiny_priors(seed)
    return ModelFolder(loaded, LoadedPrior(top, top.config, "top", "top", "vqvae"),
                       LoadedPrior(bottom, bottom.config, "bottom", "bottom", "vqvae"), fingerprint)


def random_codes(clips: int, seed: int) -> Codes:
    generator = torch.Generator().manual_seed(seed)
    return Codes(top=torch.randint(0, NUM_CODES, (clips, *TOP_SHAPE), generator=generator),
                 bottom=torch.randint(0, NUM_CODES, (clips, *BOTTOM_SHAPE), generator=generator))


def sampled_codes(folder: ModelFolder, clips: int, seed: int) -> Codes:
    """Codes drawn from the priors themselves: what they find likely."""
    generator = torch.Generator().manual_seed(seed)
    top = sample(folder.top.model, clips, generator=generator)
    return Codes(top=top, bottom=sample(folder.bottom.model, clips, condition=top, generator=generator))


def random_video(frames: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """(3, frames, size, size) uniform in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, frames, size, size, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def folder() -> ModelFolder:
    return tiny_folder()


def full_forward_pmfs(folder: ModelFolder, codes: Codes, clip: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantised PMFs of one clip's top and bottom codes from one full forward pass of each prior:
    (4, K) and (32, K) in raster order."""
    top, bottom = codes.top[clip:clip + 1], codes.bottom[clip:clip + 1]
    with torch.no_grad():
        top_log_probs = folder.top.model.log_probs(top)  # (1, K, 1, 2, 2)
        bottom_log_probs = folder.bottom.model.log_probs(bottom, top)  # (1, K, 2, 4, 4)
    rows = lambda log_probs: rearrange(log_probs, "b k t h w -> (b t h w) k")
    return quantize_pmf(rows(top_log_probs)), quantize_pmf(rows(bottom_log_probs))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_codes_round_trip_exactly(folder, seed):
    codes = random_codes(4, seed)
    compressed = compress_codes(folder, codes, frame_count=15, fps=25, verify=True)
    decoded = decompress_codes(folder, compressed.data)
    assert torch.equal(decoded.codes.top, codes.top)
    assert torch.equal(decoded.codes.bottom, codes.bottom)
    assert decoded.header == compressed.header
    assert (decoded.header.mode, decoded.header.frame_count, decoded.header.num_chunks) == ("prior", 15, 4)
    assert compressed.verification.positions == 4 * (4 + 32)
    assert compressed.verification.fraction > 0.9


def test_chunks_are_the_range_code_of_the_full_forward_pass_distributions(folder):
    # An independent computation of what each chunk must hold: the quantised PMFs of a full forward pass of
    # each prior, the top codes then the bottom codes given the clip's own top codes, through `encode_all`.
    codes = random_codes(3, seed=4)
    compressed = compress_codes(folder, codes, frame_count=12, fps=10, verify=True)
    assert compressed.verification.fraction == 1.0  # so both computations give the very same PMFs here
    for clip, chunk in enumerate(compressed.chunks):
        top_pmfs, bottom_pmfs = full_forward_pmfs(folder, codes, clip)
        symbols = torch.cat([codes.top[clip].flatten(), codes.bottom[clip].flatten()]).numpy()
        assert chunk == encode_all(symbols, np.concatenate([top_pmfs, bottom_pmfs]))


def test_the_rate_is_the_priors_information_content(folder):
    codes = sampled_codes(folder, 3, seed=5)
    compressed = compress_codes(folder, codes, frame_count=12, fps=10)
    with torch.no_grad():
        top_nats = -folder.top.model.log_probs(codes.top).gather(1, codes.top[:, None]).sum()
        bottom_log_probs = folder.bottom.model.log_probs(codes.bottom, codes.top)
        bottom_nats = -bottom_log_probs.gather(1, codes.bottom[:, None]).sum()
    torch.testing.assert_close(compressed.top_bits, float(top_nats) / math.log(2), rtol=1e-4, atol=0)
    torch.testing.assert_close(compressed.bottom_bits, float(bottom_nats) / math.log(2), rtol=1e-4, atol=0)
    information = compressed.top_bits + compressed.bottom_bits
    payload = 8 * sum(map(len, compressed.chunks))
    # A range coder ends each stream on a whole 32-bit word, at most two words past the information content.
    assert information - 1 < payload <= information * 1.01 + 64 * len(compressed.chunks)
    # Codes the priors find likely cost well under the 4 bits of fixed-width packing.
    assert information < 0.75 * 4 * (codes.top.numel() + codes.bottom.numel())


@pytest.mark.parametrize("frames", [1, 4, 5, 11])
def test_video_of_any_length_round_trips_to_the_reconstruction(folder, frames):
    video = random_video(frames, seed=frames)
    compressed = compress(folder, video, fps=25, verify=True)
    # Reference: clips cut by hand, the last held on its last frame, encoded in one batch.
    clips = -(-frames // CLIP_FRAMES)
    padded = torch.cat([video, video[:, -1:].expand(-1, clips * CLIP_FRAMES - frames, -1, -1)], dim=1)
    expected = folder.vqvae.model.encode(rearrange(padded, "c (b t) h w -> b c t h w", t=CLIP_FRAMES))
    assert torch.equal(compressed.codes.top, expected.top)
    assert torch.equal(compressed.codes.bottom, expected.bottom)

    decompressed = decompress(folder, compressed.data, batch_size=clips)
    assert decompressed.header.frame_count == frames
    assert torch.equal(decompressed.codes.top, expected.top)
    assert torch.equal(decompressed.codes.bottom, expected.bottom)
    with torch.no_grad():
        reconstruction = folder.vqvae.model.decode_codes(expected.top, expected.bottom).clamp(-1, 1)
    assert torch.equal(decompressed.video, rearrange(reconstruction, "b c t h w -> c (b t) h w")[:, :frames])


def test_pieces_and_clips_give_the_same_file_as_one_tensor():
    folder = tiny_folder(priors=False)  # the same codes give the same file in either mode
    video = random_video(9, seed=6)
    whole = compress(folder, video, fps=10).data
    pieces = [video[:, :2], video[:, 2:3], video[:, 3:9]]  # clip boundaries fall inside pieces
    assert compress(folder, iter(pieces), fps=10).data == whole
    clips = rearrange(video[:, :8], "c (b t) h w -> b c t h w", t=CLIP_FRAMES)
    assert compress(folder, [clips, video[:, 8:]], fps=10).data == whole


def test_bytes_do_not_depend_on_the_callers_batch_size_threads_or_precision():
    folder = tiny_folder(seed=7)
    video = random_video(12, seed=7)
    torch.set_num_threads(1)
    reference = compress(folder, video, fps=10, batch_size=1).data
    torch.set_num_threads(2)
    assert compress(folder, video, fps=10, batch_size=3).data == reference
    assert torch.get_num_threads() == 2  # restored after coding
    # Priors in float64 (or training mode) are coded from a float32 eval copy; the caller's stay as they were.
    for prior in (folder.top.model, folder.bottom.model):
        prior.double().train()
    assert compress(folder, video, fps=10, batch_size=2).data == reference
    assert folder.top.model.training and next(folder.bottom.model.parameters()).dtype == torch.float64


def test_fixed_mode_round_trip_without_priors():
    folder = tiny_folder(priors=False)
    video = random_video(6, seed=8)
    compressed = compress(folder, video, fps=30)
    assert compressed.header.mode == "fixed"
    assert [len(chunk) for chunk in compressed.chunks] == [packed_size(4 + 32, NUM_CODES)] * 2
    assert compressed.top_bits + compressed.bottom_bits == 2 * (4 + 32) * 4
    decompressed = decompress(folder, compressed.data)
    assert torch.equal(decompressed.codes.top, compressed.codes.top)
    assert torch.equal(decompressed.codes.bottom, compressed.codes.bottom)
    assert decompressed.video.shape == (3, 6, SIZE, SIZE)
    with pytest.raises(ValueError, match="no top and bottom prior"):
        compress(folder, video, fps=30, mode="prior")


def test_fixed_mode_can_be_chosen_with_priors(folder):
    codes = random_codes(2, seed=9)
    compressed = compress_codes(folder, codes, frame_count=8, fps=10, mode="fixed")
    assert read_vqv(compressed.data).header.mode == "fixed"
    decoded = decompress_codes(folder, compressed.data)
    assert torch.equal(decoded.codes.bottom, codes.bottom)


def test_a_file_made_with_another_model_is_refused_naming_both(folder, tmp_path):
    path = compress_codes(folder, random_codes(1, seed=10), frame_count=4, fps=10).write(tmp_path / "a.vqv")
    other = tiny_folder(seed=1, fingerprint="other-model-0002")
    with pytest.raises(FingerprintMismatchError, match="'tiny-0001'.*'other-model-0002'"):
        decompress(other, path)


def test_a_header_that_does_not_fit_the_model_is_refused(folder):
    # Same fingerprint, other clip size: only a forged or mislabelled file can do this.
    impostor = tiny_folder(priors=False, fingerprint=folder.fingerprint)
    impostor.vqvae.data["size"] = 24
    data = compress(impostor, random_video(4, size=24), fps=10).data
    with pytest.raises(VQVFormatError, match="header describes clips"):
        decompress(folder, data)


@pytest.fixture(scope="module")
def coded_file(folder) -> bytes:
    return compress_codes(folder, random_codes(2, seed=11), frame_count=7, fps=10).data


def test_truncated_files_are_refused(folder, coded_file):
    for length in (0, 7, 40, len(coded_file) // 2, len(coded_file) - 1):
        with pytest.raises(VQVFormatError):
            decompress(folder, coded_file[:length])


def test_corrupted_files_are_refused(folder, coded_file):
    for position in (3, 20, 80, len(coded_file) - 9, len(coded_file) - 1):  # magic, fields, table, payloads
        corrupted = bytearray(coded_file)
        corrupted[position] ^= 0x10
        with pytest.raises(VQVFormatError):
            decompress(folder, bytes(corrupted))


def test_progress_counts_clips(folder):
    calls = []
    compress_codes(folder, random_codes(3, seed=12), 9, 10, mode="fixed", progress=lambda *a: calls.append(a))
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_bad_input_is_refused_with_what_was_expected(folder):
    with pytest.raises(ValueError, match=r"3×N×16×16"):
        compress(folder, torch.zeros(3, 4, 16, 17), fps=10)
    with pytest.raises(ValueError, match="NaN"):
        compress(folder, torch.full((3, 4, 16, 16), float("nan")), fps=10)
    with pytest.raises(ValueError, match="at least one frame"):
        compress(folder, [], fps=10)
    with pytest.raises(ValueError, match="fps"):
        compress(folder, random_video(4), fps=0)
    with pytest.raises(ValueError, match=r"frame_count: 2 clips of 4 frames hold 5 to 8"):
        compress_codes(folder, random_codes(2, seed=0), frame_count=4, fps=10)
    codes = random_codes(1, seed=0)
    with pytest.raises(ValueError, match=r"codes.top: expected values in \[0, 16\)"):
        compress_codes(folder, Codes(codes.top + NUM_CODES, codes.bottom), frame_count=4, fps=10)
    with pytest.raises(ValueError, match=r"codes.bottom: expected integers \(C, 2, 4, 4\)"):
        compress_codes(folder, Codes(codes.top, codes.bottom[:, :1]), frame_count=4, fps=10)


def test_clip_geometry_checks_the_priors_against_the_clip_size(folder):
    assert clip_geometry(folder) == (CLIP_FRAMES, SIZE, SIZE, TOP_SHAPE, BOTTOM_SHAPE, NUM_CODES)
    mismatched = tiny_folder()
    mismatched.vqvae.data["frames"] = 8
    with pytest.raises(ValueError, match=r"top prior models grids \(1, 2, 2\)"):
        clip_geometry(mismatched)
