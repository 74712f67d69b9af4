"""The video codec: exact round trips under tiny random-weight priors, in coding batches of several clips,
reproducible bytes, refusals, files of the top level alone, decoders that compute other PMFs, and files of
format versions 1 and 2.

Clips are 4 frames of 16×16: top grid 1×2×2, bottom 2×4×4, 16 codes. The priors' output layers are scaled up
so that their distributions are far from uniform: a PMF that differed between encoder and decoder, or a code
coded under the wrong context, would then show as wrong codes or a wrong rate.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange

from tests.codec.test_container import raw_file
from vqvid.codec import FingerprintMismatchError, VQVFormatError, coding, encode_all, quantize_pmf, read_vqv
from vqvid.codec.coding import (
    DesyncError,
    codes_checksum,
    default_coding_batch,
    encode_group,
    encode_level,
    writer_description,
)
from vqvid.codec.container import FORMAT_VERSION
from vqvid.codec.packing import pack_fixed, packed_size
from vqvid.codec.video import (
    TopCodesOnlyError,
    compress,
    compress_codes,
    decompress,
    decompress_codes,
)
from vqvid.geometry import clip_geometry
from vqvid.models.pixelsnail import PixelSNAIL, PixelSNAILConfig
from vqvid.models.vqvae import VQVAE, Codes, VQVAEConfig
from vqvid.persistence import LoadedPrior, LoadedVQVAE, ModelFolder
from vqvid.sampling import sample
from vqvid.sampling.fused import FusedStepper
from vqvid.sampling.steppers import IncrementalStepper

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


def tiny_priors(seed: int = 0, tied_head: bool = False, condition_norm: bool = False) -> tuple[PixelSNAIL, PixelSNAIL]:
    """Top p(top) over 1×2×2 and bottom p(bottom | top) over 2×4×4, with attention, in eval mode."""
    torch.manual_seed(seed)
    top = PixelSNAILConfig(num_codes=NUM_CODES, shape=TOP_SHAPE, channels=8, n_blocks=1, n_res_blocks=1,
                           attention=True, n_heads=1, key_channels=4, value_channels=4, dropout=0.0,
                           embed_dim=4, tied_head=tied_head)
    bottom = replace(top, shape=BOTTOM_SHAPE, condition_num_codes=NUM_CODES, condition_shape=TOP_SHAPE,
                     condition_channels=4, n_cond_res_blocks=1, condition_norm=condition_norm)
    priors = PixelSNAIL(top).eval(), PixelSNAIL(bottom).eval()
    with torch.no_grad():
        for prior in priors:
            prior.head[-1].weight.mul_(SHARPEN)
    return priors


def tiny_folder(seed: int = 0, priors: bool = True, fingerprint: str = "tiny-0001",
                tied_head: bool = False, condition_norm: bool = False) -> ModelFolder:
    vqvae = tiny_vqvae(seed)
    loaded = LoadedVQVAE(vqvae, vqvae.config, "vqvae", {"frames": CLIP_FRAMES, "size": SIZE})
    if not priors:
        return ModelFolder(loaded, None, None, fingerprint)
    top, bottom = tiny_priors(seed, tied_head, condition_norm)
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
    assert (decoded.header.mode, decoded.header.frame_count, decoded.header.num_chunks) == ("prior", 15, 8)
    assert compressed.verification.positions == 4 * (4 + 32)
    assert compressed.verification.fraction > 0.9


@pytest.mark.parametrize("condition_norm", [False, True], ids=["tied", "tied-condition-norm"])  # the presets': both
def test_priors_with_tied_heads_round_trip_exactly(condition_norm):
    folder = tiny_folder(tied_head=True, condition_norm=condition_norm)
    for codes in (random_codes(3, seed=4), sampled_codes(folder, 3, seed=5)):
        compressed = compress_codes(folder, codes, frame_count=12, fps=25, verify=True)
        decoded = decompress_codes(folder, compressed.data)
        assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
        assert compressed.verification.fraction > 0.9


@pytest.mark.parametrize("coding_batch", [1, 2])
def test_chunks_are_the_range_code_of_the_priors_distributions(folder, coding_batch):
    # What each chunk must hold: the top chunks of all clips, then their bottom chunks, each the range code of
    # the clip's codes of that level under the PMFs the stepper computed for its coding batch (clips 0-1, then
    # clip 2 with a dummy clip, for a batch of 2). Those PMFs must be the priors' distributions given the
    # right context: a full forward pass of each prior over the clip alone, a different float computation,
    # gives the same quantised PMFs up to last-bit float differences, which move a row only rarely.
    codes = random_codes(3, seed=4)
    compressed = compress_codes(folder, codes, frame_count=12, fps=10, coding_batch=coding_batch)
    header = compressed.header
    assert (header.num_chunks, header.levels, header.coding_batch) == (6, "both", coding_batch)
    priors = coding.coding_priors(folder.top.model, folder.bottom.model)
    groups = [slice(start, min(start + coding_batch, 3)) for start in range(0, 3, coding_batch)]
    coded = [(top, bottom) for group in groups for top, bottom in zip(
        encode_group(priors.top, codes.top[group], None, coding_batch, keep_pmfs=True),
        encode_group(priors.bottom, codes.bottom[group], codes.top[group], coding_batch, keep_pmfs=True),
        strict=True)]
    rows_matching, rows = 0, 0
    for clip, (top, bottom) in enumerate(coded):
        assert compressed.chunks[clip] == encode_all(codes.top[clip].flatten().numpy(), top.pmfs)
        assert compressed.chunks[3 + clip] == encode_all(codes.bottom[clip].flatten().numpy(), bottom.pmfs)
        assert compressed.checks[clip] == codes_checksum(codes.top[clip])
        assert compressed.checks[3 + clip] == codes_checksum(codes.bottom[clip])
        top_pmfs, bottom_pmfs = full_forward_pmfs(folder, codes, clip)
        for stepped, full in ((top.pmfs, top_pmfs), (bottom.pmfs, bottom_pmfs)):
            # a row that differs does so by a count or a few, not as another distribution would
            assert np.abs(stepped.astype(np.int64) - full.astype(np.int64)).max() < 0.01 * 2**24
            rows_matching += int((stepped == full).all(axis=1).sum())
            rows += len(stepped)
    assert rows_matching >= 0.9 * rows


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
    # Reference: clips cut by hand, the last held on its last frame, each encoded alone as the codec promises.
    clips = -(-frames // CLIP_FRAMES)
    padded = torch.cat([video, video[:, -1:].expand(-1, clips * CLIP_FRAMES - frames, -1, -1)], dim=1)
    alone = [folder.vqvae.model.encode(clip[None])
             for clip in rearrange(padded, "c (b t) h w -> b c t h w", t=CLIP_FRAMES)]
    expected = Codes(torch.cat([codes.top for codes in alone]), torch.cat([codes.bottom for codes in alone]))
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


def _record_coding_settings(monkeypatch, inputs: list | None = None) -> list[tuple]:
    """From now on, every VQ-VAE encode and every prior step of the codec appends (name, batch, threads, matmul
    precision, parameter dtype) to the list returned; with `inputs`, also (name, what it computes from) to that
    list: the clip encoded, or the step's position, codes and condition, each with the model's weights."""
    seen = []

    def recorder(name, method, batch, model, operands):
        def record(self, *args, **kwargs):
            seen.append((name, batch(self, *args), torch.get_num_threads(), torch.get_float32_matmul_precision(),
                         next(model(self).parameters()).dtype))
            if inputs is not None:
                weights = torch.cat([p.detach().flatten().double() for p in model(self).parameters()])
                inputs.append((name, *(x.clone() if torch.is_tensor(x) else x for x in operands(self, *args)),
                               weights))
            return method(self, *args, **kwargs)
        return record

    stepper = coding.stepper_class(FORMAT_VERSION)  # the stepper new files are coded with
    monkeypatch.setattr(VQVAE, "encode", recorder("encode", VQVAE.encode, lambda _, video: video.shape[0],
                                                  lambda vqvae: vqvae, lambda _, video: (video,)))
    monkeypatch.setattr(stepper, "step_log_probs", recorder(
        "step", stepper.step_log_probs, lambda self: self.codes.shape[0], lambda self: self.prior,
        lambda self: (self.position, self.codes)))
    if inputs is not None:  # what a stepper is started from: its batch and condition (the top codes)
        init = stepper.__init__

        def started(self, prior, codes, *, condition=None, start=0):
            inputs.append(("start", codes, None if condition is None else condition.clone(), start))
            init(self, prior, codes, condition=condition, start=start)

        monkeypatch.setattr(stepper, "__init__", started)
    return seen


def _same_computations(first: list[tuple], second: list[tuple]) -> bool:
    """Whether two input records hold the same computations on exactly equal operands."""
    same = lambda a, b: torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else a == b
    return len(first) == len(second) and all(
        len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        for a, b in zip(first, second, strict=True))


def test_every_float_of_the_codec_runs_with_the_files_batch_on_one_thread_in_float32(monkeypatch):
    # What makes the bytes independent of the caller's batch size, threads and precision, checked where it
    # happens on any machine: every VQ-VAE encode sees one clip, and every prior step, encoding or decoding,
    # the file's coding batch of clips, one thread, float32 and full-precision matmuls, whatever the caller set.
    folder = tiny_folder(seed=7)
    seen = _record_coding_settings(monkeypatch)
    torch.set_num_threads(2)
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        folder.vqvae.model.double()
        data = compress(folder, random_video(12, seed=7), fps=10, batch_size=3, coding_batch=2).data
        encoded = list(seen)
        seen.clear()
        decompress_codes(folder, data)
    finally:
        torch.set_float32_matmul_precision(precision)
        folder.vqvae.model.float()
    assert {name for name, *_ in encoded} == {"encode", "step"} and {name for name, *_ in seen} == {"step"}
    assert sum(name == "encode" for name, *_ in encoded) == 3  # 12 frames: 3 clips, each encoded alone
    assert {tuple(what) for name, *what in encoded if name == "encode"} == {(1, 1, "highest", torch.float32)}
    # 3 clips in coding batches of 2, the second padded with a dummy clip: the same steps each way.
    steps = [tuple(what) for name, *what in encoded if name == "step"]
    assert len(steps) == len(seen) >= 2 * (4 + 32)
    assert set(steps) == {tuple(what) for _, *what in seen} == {(2, 1, "highest", torch.float32)}
    assert torch.get_num_threads() == 2  # the caller's settings are back


def test_the_callers_batch_size_threads_and_precision_never_reach_what_the_file_is_computed_from(monkeypatch):
    # Every clip is encoded alone and the priors step through the file's coding batch of clips on one thread in
    # float32 (pinned_computation), so the caller's batch size, threads, precision and model dtype never reach a
    # float of the file. Checked exactly, on any CPU: each run's encodes and prior steps see equal operands (clip,
    # integer codes, float32 weights) and the same settings, and every file decodes to the same codes. (Equal
    # operands and settings give equal bytes only where the same kernels round alike, so bytes are not compared
    # across these runs.) 3 clips in coding batches of 2: a padded group.
    folder = tiny_folder(seed=7)
    video = random_video(12, seed=7)
    inputs: list[tuple] = []
    seen = _record_coding_settings(monkeypatch, inputs)

    def run(batch_size: int) -> tuple[bytes, list[tuple]]:
        inputs.clear()
        data = compress(folder, video, fps=10, batch_size=batch_size, coding_batch=2).data
        return data, list(inputs)

    torch.set_num_threads(1)
    reference, reference_inputs = run(batch_size=1)
    assert read_vqv(reference).header.coding_batch == 2
    expected = decompress_codes(folder, reference).codes
    torch.set_num_threads(2)
    data, computed = run(batch_size=3)
    assert _same_computations(computed, reference_inputs)
    assert torch.get_num_threads() == 2  # restored after coding
    files = [data]
    # Models in float64 (or training mode) are run from a float32 eval copy; the caller's stay as they were.
    for model in (folder.vqvae.model, folder.top.model, folder.bottom.model):
        model.double().train()
    data, computed = run(batch_size=2)
    assert _same_computations(computed, reference_inputs)
    files.append(data)
    assert folder.top.model.training and next(folder.bottom.model.parameters()).dtype == torch.float64
    assert next(folder.vqvae.model.parameters()).dtype == torch.float64
    for model in (folder.vqvae.model, folder.top.model, folder.bottom.model):
        model.float().eval()
    for data in files:
        codes = decompress_codes(folder, data).codes
        assert torch.equal(codes.top, expected.top) and torch.equal(codes.bottom, expected.bottom)
    # The decoder reads the batch from the header, whatever its caller's threads.
    codes = [decompress_codes(folder, reference).codes]
    torch.set_num_threads(1)
    codes.append(decompress_codes(folder, reference).codes)
    torch.set_num_threads(2)
    assert all(torch.equal(c.top, codes[0].top) and torch.equal(c.bottom, codes[0].bottom) for c in codes)
    # The precondition of every comparison above: whatever the caller set, the floats saw the pinned settings.
    assert {tuple(what) for name, *what in seen} == {(1, 1, "highest", torch.float32),
                                                     (2, 1, "highest", torch.float32)}
    assert {tuple(what) for name, *what in seen if name == "step"} == {(2, 1, "highest", torch.float32)}


def test_operand_records_tell_a_changed_computation_apart(monkeypatch):
    # The comparison above can fail: another coding batch changes what the prior steps compute from.
    folder = tiny_folder(seed=7)
    video = random_video(12, seed=7)
    first: list[tuple] = []
    _record_coding_settings(monkeypatch, first)
    compress(folder, video, fps=10, coding_batch=2)
    second = list(first)
    first.clear()
    compress(folder, video, fps=10, coding_batch=3)
    assert not _same_computations(first, second)
    assert _same_computations(second, second) and not _same_computations(second, second[:-1])


@pytest.mark.parametrize("clips, coding_batch", [(5, 2), (5, 3), (4, 4), (2, 16), (3, None)])
def test_coding_batches_round_trip_exactly(folder, clips, coding_batch):
    # Groups of the coding batch, the last one padded with dummy clips where the clips do not divide evenly;
    # a batch larger than the file is cut to its clips, and without one the default is taken.
    codes = sampled_codes(folder, clips, seed=clips)
    frames = (clips - 1) * CLIP_FRAMES + 1
    compressed = compress_codes(folder, codes, frame_count=frames, fps=10, coding_batch=coding_batch)
    expected = min(clips, coding_batch or default_coding_batch(coding.coding_priors(*tiny_priors())))
    assert compressed.header.coding_batch == read_vqv(compressed.data).header.coding_batch == expected
    decoded = decompress_codes(folder, compressed.data)
    assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
    assert torch.equal(decompress_codes(folder, compressed.data, levels="top").codes.top, codes.top)
    cut = compressed.data[:compressed.top_layer_size]
    assert torch.equal(decompress_codes(folder, cut).codes.top, codes.top)
    top_only = compress_codes(folder, Codes(codes.top, None), frame_count=frames, fps=10, levels="top",
                              coding_batch=coding_batch)
    assert top_only.chunks == compressed.chunks[:clips]  # the top layer does not depend on the bottom codes


def test_the_default_coding_batch_fits_the_priors_in_memory():
    tiny = coding.coding_priors(*tiny_priors())
    assert default_coding_batch(tiny) == coding.DEFAULT_CODING_BATCH
    large = PixelSNAIL(PixelSNAILConfig(num_codes=16, shape=(8, 64, 64), channels=256, n_blocks=6,
                                        n_res_blocks=1, attention=False, dropout=0.0))  # the `thesis` bottom
    assert 1.5e9 < coding.stepper_bytes(large) < 1.7e9
    assert default_coding_batch(coding.CodingPriors(tiny.top, large)) == 1
    assert default_coding_batch(coding.CodingPriors(large, None)) == 1


@pytest.mark.parametrize("coding_batch", [0, 65, -1, 2.0, True, "4"])
def test_a_bad_coding_batch_is_refused(folder, coding_batch):
    with pytest.raises(ValueError, match=rf"coding_batch {coding_batch!r}: expected a whole number of clips "
                                         r"from 1 to 64"):
        compress_codes(folder, random_codes(1, seed=0), frame_count=4, fps=10, coding_batch=coding_batch)
    with pytest.raises(ValueError, match="coding_batch"):
        compress(folder, random_video(4), fps=10, coding_batch=coding_batch)


def test_fixed_mode_round_trip_without_priors():
    folder = tiny_folder(priors=False)
    video = random_video(6, seed=8)
    compressed = compress(folder, video, fps=30)
    assert compressed.header.mode == "fixed"
    assert [len(chunk) for chunk in compressed.chunks] == [packed_size(4, NUM_CODES)] * 2 + [
        packed_size(32, NUM_CODES)] * 2
    assert compressed.chunks[2] == pack_fixed(compressed.codes.bottom[0].numpy(), NUM_CODES)
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
    top_layer_end = len(coded_file) - sum(map(len, read_vqv(coded_file).chunks[2:]))
    for length in (0, 7, 40, top_layer_end - 1, top_layer_end + 1, len(coded_file) - 1):
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
    assert calls == [(i, 6) for i in range(1, 7)]  # 3 top chunks, then 3 bottom chunks


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


# --- decoders that compute other PMFs -------------------------------------------------------------------------


def perturbed_pmfs(monkeypatch, at_call: int, row: int = 0) -> None:
    """From the `at_call`-th batch of PMFs the decoder computes on, the PMF of `row` (a clip of the coding
    batch) puts almost all mass on another symbol than the one it favoured: what a decoder whose floats differ
    from the encoder's does, at worst."""
    calls = {"n": 0}
    quantize = coding.quantize_pmf

    def perturbed(log_probs):
        pmfs = quantize(log_probs)
        calls["n"] += 1
        if calls["n"] >= at_call:
            favourite = int(pmfs[row].argmax())
            pmfs[row] = 1
            pmfs[row, (favourite + 1) % pmfs.shape[1]] += 2**24 - pmfs.shape[1]
        return pmfs

    monkeypatch.setattr(coding, "quantize_pmf", perturbed)


@pytest.mark.parametrize("coding_batch, at_call, row, chunk, what", [
    # A batch of 1: a call per clip and position. Top chunks 0, 1 (4 codes each), bottom chunks 2, 3 (32
    # codes each); call 49 is the 9th code of clip 1's bottom chunk.
    (1, 1, 0, 0, "top codes of clip 0"),
    (1, 4 + 4 + 32 + 9, 0, 3, "bottom codes of clip 1"),
    # A batch of 2: a call per position for both clips, a row each; clip 0 decodes right in each case.
    (2, 1, 1, 1, "top codes of clip 1"),
    (2, 4 + 9, 1, 3, "bottom codes of clip 1"),
    (2, 4 + 30, 0, 2, "bottom codes of clip 0"),
])
def test_a_decoder_with_other_pmfs_fails_naming_the_chunk(folder, monkeypatch, coding_batch, at_call, row, chunk,
                                                          what):
    data = compress_codes(folder, sampled_codes(folder, 2, seed=13), frame_count=8, fps=10,
                          coding_batch=coding_batch).data
    perturbed_pmfs(monkeypatch, at_call, row)
    with pytest.raises(DesyncError, match=rf"chunk {chunk} of 4 \({what}\)") as error:
        decompress(folder, data)
    message = str(error.value)
    assert "other probabilities than the encoder" in message and writer_description() in message


def test_the_error_names_both_stacks_when_they_differ(folder, monkeypatch):
    data = compress_codes(folder, random_codes(1, seed=14), frame_count=4, fps=10).data
    monkeypatch.setattr("vqvid.codec.coding.writer_description", lambda: "torch 0.0; cpu elsewhere")
    perturbed_pmfs(monkeypatch, 1)
    with pytest.raises(DesyncError, match=r"written on \[vqvid .*torch .*\], this decoder runs on \[torch 0.0; "
                                          r"cpu elsewhere\]"):
        decompress(folder, data)


def test_the_header_records_the_writer():
    header = read_vqv(compress(tiny_folder(priors=False), random_video(4), fps=10).data).header
    assert header.writer == writer_description()
    assert f"torch {torch.__version__}" in header.writer
    assert header.writer.split("; ")[2].endswith(f" {torch.backends.cpu.get_cpu_capability()}")  # e.g. AVX2


# --- files of the top level alone ---------------------------------------------------------------------------


def test_the_top_layer_alone_decodes_to_the_coarse_video(folder):
    video = random_video(7, seed=15)
    full = compress(folder, video, fps=10)
    top_only = compress(folder, video, fps=10, levels="top")
    cut = full.data[:full.top_layer_size]
    # What the top codes alone decode to: the bottom codes zeroed.
    with torch.no_grad():
        coarse = folder.vqvae.model.decode_codes(full.codes.top, None).clamp(-1, 1)
    coarse = rearrange(coarse, "b c t h w -> c (b t) h w")[:, :7]
    for data, held in ((full.data, "both"), (top_only.data, "top"), (cut, "top")):
        decoded = decompress(folder, data, levels="top", batch_size=2)
        assert decoded.levels == "top" and decoded.codes.bottom is None
        assert torch.equal(decoded.codes.top, full.codes.top)
        assert torch.equal(decoded.video, coarse)
        assert decompress_codes(folder, data).levels == held  # by default: what the file holds
    # The top-only file is the full file's header and top chunks, with the header saying so.
    assert top_only.header.levels == "top" and top_only.chunks == full.chunks[:2]
    assert top_only.size < full.top_layer_size + 8 < full.size
    assert top_only.bottom_bits == 0 and top_only.top_bits == full.top_bits
    with pytest.raises(TopCodesOnlyError, match="only top codes .the file ends after its top layer., so only its top"):
        decompress_codes(folder, cut, levels="both")
    with pytest.raises(TopCodesOnlyError, match="only top codes .written with the top level alone., so only its top"):
        decompress_codes(folder, top_only.data, levels="both")


def test_levels_top_needs_only_the_top_prior_and_fixed_mode_has_layers_too():
    folder = tiny_folder()
    only_top = ModelFolder(folder.vqvae, folder.top, None, folder.fingerprint)
    codes = random_codes(2, seed=16)
    compressed = compress_codes(only_top, Codes(codes.top, None), frame_count=8, fps=10, levels="top")
    assert compressed.header.mode == "prior"
    assert torch.equal(decompress_codes(only_top, compressed.data).codes.top, codes.top)
    fixed = compress_codes(folder, codes, frame_count=8, fps=10, mode="fixed")
    cut = fixed.data[:fixed.top_layer_size]
    assert torch.equal(decompress_codes(folder, cut).codes.top, codes.top)
    with pytest.raises(ValueError, match="levels: expected 'top' or 'both'"):
        compress_codes(folder, codes, frame_count=8, fps=10, levels="bottom")


# --- format version 1 ---------------------------------------------------------------------------------------


def version_1_file(folder: ModelFolder, codes: Codes, frame_count: int, mode: str) -> bytes:
    """A file as format version 1 wrote it: one chunk per clip, its top then its bottom codes, under the same
    stepper PMFs (mode "prior") or packed (mode "fixed")."""
    priors = coding.coding_priors(folder.top.model, folder.bottom.model)
    chunks = []
    for clip in range(codes.top.shape[0]):
        symbols = torch.cat([codes.top[clip].flatten(), codes.bottom[clip].flatten()]).numpy()
        if mode == "fixed":
            chunks.append(pack_fixed(symbols, NUM_CODES))
            continue
        top = encode_level(priors.top, codes.top[clip], None, keep_pmfs=True)
        bottom = encode_level(priors.bottom, codes.bottom[clip], codes.top[clip:clip + 1], keep_pmfs=True)
        chunks.append(encode_all(symbols, np.concatenate([top.pmfs, bottom.pmfs])))
    return raw_file(version=1, mode=("fixed", "prior").index(mode), fingerprint=folder.fingerprint.encode(),
                    num_codes=NUM_CODES, frame_count=frame_count, fps=(10, 1), height=SIZE, width=SIZE,
                    clip_frames=CLIP_FRAMES, top=TOP_SHAPE, bottom=BOTTOM_SHAPE, chunks=tuple(chunks),
                    checks=(0,) * len(chunks))


@pytest.mark.parametrize("mode", ["fixed", "prior"])
def test_version_1_files_still_decode(folder, mode):
    codes = random_codes(2, seed=17)
    data = version_1_file(folder, codes, 7, mode)
    decoded = decompress_codes(folder, data)
    assert decoded.header.version == 1 and decoded.levels == "both"
    assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
    top_only = decompress(folder, data, levels="top")
    assert torch.equal(top_only.codes.top, codes.top) and top_only.codes.bottom is None


# --- format version 2 ---------------------------------------------------------------------------------------


def version_2_file(folder: ModelFolder, codes: Codes, frame_count: int) -> bytes:
    """A file as format version 2 wrote it: chunks as now, each clip coded alone (a coding batch of 1), and
    no coding batch field."""
    priors = coding.coding_priors(folder.top.model, folder.bottom.model)
    clips = range(codes.top.shape[0])
    chunks = [encode_level(priors.top, codes.top[clip], None).data for clip in clips]
    chunks += [encode_level(priors.bottom, codes.bottom[clip], codes.top[clip:clip + 1]).data for clip in clips]
    checks = [codes_checksum(codes.top[clip]) for clip in clips] + [codes_checksum(codes.bottom[clip])
                                                                    for clip in clips]
    return raw_file(version=2, mode=1, fingerprint=folder.fingerprint.encode(), num_codes=NUM_CODES,
                    frame_count=frame_count, fps=(10, 1), height=SIZE, width=SIZE, clip_frames=CLIP_FRAMES,
                    top=TOP_SHAPE, bottom=BOTTOM_SHAPE, chunks=tuple(chunks), checks=tuple(checks))


def test_version_2_files_still_decode(folder):
    codes = sampled_codes(folder, 3, seed=18)
    data = version_2_file(folder, codes, 11)
    decoded = decompress_codes(folder, data)
    assert (decoded.header.version, decoded.header.coding_batch, decoded.levels) == (2, 1, "both")
    assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
    assert torch.equal(decompress_codes(folder, data, levels="top").codes.top, codes.top)
    # The same chunks as a version 3 file of coding batch 1 (the same stepper): only the header differs.
    assert read_vqv(data).chunks == read_vqv(version_3_file(folder, codes, 11, coding_batch=1)).chunks


# --- format version 3 ---------------------------------------------------------------------------------------


def version_3_file(folder: ModelFolder, codes: Codes, frame_count: int, coding_batch: int) -> bytes:
    """A file as format version 3 wrote it: version 4's layout, its PMFs from `IncrementalStepper`."""
    priors = coding.coding_priors(folder.top.model, folder.bottom.model)
    clips = codes.top.shape[0]
    groups = [slice(start, min(start + coding_batch, clips)) for start in range(0, clips, coding_batch)]
    chunks = [clip.data for group in groups
              for clip in encode_group(priors.top, codes.top[group], None, coding_batch, version=3)]
    chunks += [clip.data for group in groups for clip in encode_group(
        priors.bottom, codes.bottom[group], codes.top[group], coding_batch, version=3)]
    checks = [codes_checksum(codes.top[clip]) for clip in range(clips)] + [
        codes_checksum(codes.bottom[clip]) for clip in range(clips)]
    return raw_file(version=3, mode=1, fingerprint=folder.fingerprint.encode(), num_codes=NUM_CODES,
                    frame_count=frame_count, fps=(10, 1), height=SIZE, width=SIZE, clip_frames=CLIP_FRAMES,
                    top=TOP_SHAPE, bottom=BOTTOM_SHAPE, chunks=tuple(chunks), checks=tuple(checks),
                    coding_batch=coding_batch)


def test_each_version_is_coded_and_decoded_with_its_own_stepper(folder, monkeypatch):
    stepper_class, used = coding.stepper_class, []
    monkeypatch.setattr(coding, "stepper_class", lambda version: used.append(stepper_class(version)) or used[-1])
    codes = sampled_codes(folder, 3, seed=19)
    old = version_3_file(folder, codes, 11, coding_batch=2)
    assert set(used) == {IncrementalStepper}
    used.clear()
    decoded = decompress_codes(folder, old)
    assert (decoded.header.version, decoded.header.coding_batch) == (3, 2) and set(used) == {IncrementalStepper}
    assert torch.equal(decoded.codes.top, codes.top) and torch.equal(decoded.codes.bottom, codes.bottom)
    used.clear()
    new = compress_codes(folder, codes, 11, fps=10, coding_batch=2)
    assert new.header.version == FORMAT_VERSION == 4 and set(used) == {FusedStepper}
    used.clear()
    assert torch.equal(decompress_codes(folder, new.data).codes.bottom, codes.bottom) and set(used) == {FusedStepper}


NEW_PRECISION_API = textwrap.dedent(
    """
    import torch
    from tests.codec.test_video_codec import random_video, tiny_folder
    from vqvid.codec.video import compress

    folder, video = tiny_folder(seed=3), random_video(4, seed=3)
    reference = compress(folder, video, fps=10).data
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"  # the per-backend API, which torch will not mix
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    assert compress(folder, video, fps=10).data == reference
    assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"  # the caller's settings are back
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    print("same bytes")
    """
)


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="torch without per-backend precisions")
def test_a_caller_on_the_per_backend_precision_api_gets_the_same_bytes():
    # In its own process: once a process sets precisions through this API, torch's global getter refuses.
    root = Path(__file__).parents[2]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    result = subprocess.run([sys.executable, "-c", NEW_PRECISION_API], capture_output=True, text=True,
                            env=environment, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "same bytes" in result.stdout
