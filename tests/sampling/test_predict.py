"""Prediction from context frames with tiny random-weight models: 8-frame 16×16 clips, top codes 2×2×2,
bottom codes 4×4×4, 16 codes per level."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from tests.tiny import CLIP_FRAMES, SIZE, tiny_priors, tiny_reader, tiny_vqvae
from vqvid.metrics import codebook_distance
from vqvid.persistence import LoadedPrior, LoadedReader, LoadedVQVAE, ModelFolder
from vqvid.sampling import sample
from vqvid.sampling.predict import (
    ANCHOR_TOLERANCE,
    _windows,
    anchor_on_context,
    block_motion,
    check_context,
    continuation_scores,
    encode_context,
    padding_cost,
    predict,
    warp_along_decoding,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder() -> ModelFolder:
    vqvae = tiny_vqvae()
    top, bottom = tiny_priors()
    return ModelFolder(
        vqvae=LoadedVQVAE(vqvae, vqvae.config, "vqvae", {"frames": CLIP_FRAMES, "size": SIZE}),
        top=LoadedPrior(top, top.config, "top", "top", "vqvae"),
        bottom=LoadedPrior(bottom, bottom.config, "bottom", "bottom", "vqvae"),
        fingerprint="folder",
    )


def clips(b: int = 2, frames: int = CLIP_FRAMES, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, frames, SIZE, SIZE, generator=generator) * 2 - 1  # (B, 3, T, H, W)


def run(folder: ModelFolder, video: torch.Tensor, context: int = 4, frames: int = CLIP_FRAMES, **options):
    return predict(folder, video, context, frames, progress=False, **options)


@pytest.mark.parametrize("model", ["folder", "with_reader"])  # the top codes from the top prior, or a reader
def test_frames_after_the_context_change_nothing_that_is_generated(model, request):
    folder = request.getfixturevalue(model)
    original = clips()
    reference = run(folder, original, samples=2)
    for frame in range(4, CLIP_FRAMES):
        changed = original.clone()
        changed[:, :, frame] = -changed[:, :, frame]
        prediction = run(folder, changed, samples=2)
        assert torch.equal(prediction.codes.top, reference.codes.top)
        assert torch.equal(prediction.codes.bottom, reference.codes.bottom)
        assert torch.equal(prediction.video, reference.video)


def test_encoding_the_whole_clip_would_leak_the_future_into_the_context_codes(folder):
    """The counterpart of the test above: if `predict` encoded whole clips, that test would fail."""
    vqvae = folder.vqvae.model
    original = clips()
    changed = original.clone()
    changed[:, :, 4] = -changed[:, :, 4]
    whole, whole_changed = vqvae.encode(original), vqvae.encode(changed)
    assert not torch.equal(whole.bottom[:, :2], whole_changed.bottom[:, :2])
    alone = encode_context(vqvae, original[:, :, :4], CLIP_FRAMES)
    assert torch.equal(alone.bottom, encode_context(vqvae, changed[:, :, :4], CLIP_FRAMES).bottom)


def test_encode_context_pads_with_the_last_frame_and_keeps_the_context_frames():
    vqvae = tiny_vqvae()
    context = clips()[:, :, :4]
    padded = torch.cat([context, context[:, :, 3:].expand(-1, -1, CLIP_FRAMES - 4, -1, -1)], dim=2)
    expected = vqvae.encode(padded)  # the padded clip by hand: (B, 3, 8, H, W)
    codes = encode_context(vqvae, context, CLIP_FRAMES)
    assert torch.equal(codes.top, expected.top[:, :1])
    assert torch.equal(codes.bottom, expected.bottom[:, :2])
    empty = encode_context(vqvae, context[:, :, :0], CLIP_FRAMES)
    assert empty.top.shape == (2, 0, 2, 2) and empty.bottom.shape == (2, 0, 4, 4)


def test_prediction_keeps_the_encoded_context_and_decodes_its_codes(folder):
    video = clips()
    prediction = run(folder, video, samples=3)
    given = encode_context(folder.vqvae.model, video[:, :, :4], CLIP_FRAMES)
    vqvae = folder.vqvae.model
    for s in range(3):
        assert torch.equal(prediction.codes.top[:, s, :1], given.top)
        assert torch.equal(prediction.codes.bottom[:, s, :2], given.bottom)
        top, bottom = prediction.codes.top[:, s], prediction.codes.bottom[:, s]
        decoded = vqvae.decode_codes(top, bottom)
        assert torch.allclose(prediction.decoded[:, s], decoded, atol=1e-6)
        # Anchored by default: the context frames are the input's, and the frames after them the decoding plus
        # the known error of the last context frame where the decoding has not changed.
        assert torch.equal(prediction.video[:, s, :, :4], video[:, :, :4])
        assert torch.allclose(prediction.video[:, s], anchored_by_hand(decoded, video), atol=1e-6)
        # The mixed panel: sampled top with the input's own (whole-clip) bottom codes, anchored the same way.
        mixed = vqvae.decode_codes(top, vqvae.encode(video).bottom)
        assert torch.allclose(prediction.generated_top[:, s], anchored_by_hand(mixed, video), atol=1e-6)
    assert prediction.anchored
    assert prediction.video.shape == prediction.decoded.shape == (2, 3, 3, CLIP_FRAMES, SIZE, SIZE)
    # Samples share the context but not what follows it.
    assert not torch.equal(prediction.codes.bottom[:, 0, 2:], prediction.codes.bottom[:, 1, 2:])


def anchored_by_hand(decoded: torch.Tensor, video: torch.Tensor, context: int = 4) -> torch.Tensor:
    """One sample's decoding (B, 3, F, H, W) anchored on `video`, frame by frame and pixel by pixel."""
    out = decoded.clone()
    out[:, :, :context] = video[:, :, :context]
    error = video[:, :, context - 1] - decoded[:, :, context - 1]  # (B, 3, H, W)
    for t in range(context, decoded.shape[2]):
        change = (decoded[:, :, t] - decoded[:, :, context - 1]).abs().mean(1, keepdim=True)  # (B, 1, H, W)
        out[:, :, t] = decoded[:, :, t] + torch.exp(-((change / ANCHOR_TOLERANCE) ** 2)) * error
    return out


def test_the_anchors_change_the_frames_shown_and_not_the_samples(folder):
    video = clips()
    plain = run(folder, video, samples=2, seed=5, anchor="none")
    assert plain.anchor == "none" and not plain.anchored and plain.video is plain.decoded
    for anchor, by_hand in (("last", anchor_on_context(plain.decoded, video, 4)),  # the default
                            ("warp", warp_along_decoding(plain.decoded, video, 4))):
        anchored = run(folder, video, samples=2, seed=5, **({} if anchor == "last" else {"anchor": anchor}))
        assert anchored.anchor == anchor and anchored.anchored
        assert torch.equal(plain.codes.top, anchored.codes.top) and torch.equal(plain.decoded, anchored.decoded)
        assert torch.equal(anchored.video, by_hand)
    # Nothing to anchor on without context frames.
    assert not run(folder, video, context=0, samples=1).anchored
    with pytest.raises(ValueError, match="anchor='first': expected one of last, warp, none"):
        run(folder, video, anchor="first")


def motion_by_hand(current: torch.Tensor, previous: torch.Tensor, y: int, x: int, radius: int, patch: int,
                   penalty: float) -> tuple[int, int]:
    """block_motion of pixel (y, x) of `current` (3, H, W), by trying every displacement in turn: the patch
    clipped at the frame's edges, `previous` read beyond them at its nearest edge pixel."""
    _, h, w = current.shape
    half = patch // 2
    costs = {}
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            differences = [(current[:, i, j] - previous[:, min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)])
                           .abs().mean() for i in range(max(y - half, 0), min(y + half + 1, h))
                           for j in range(max(x - half, 0), min(x + half + 1, w))]
            costs[dy, dx] = float(sum(differences) / len(differences)) + penalty * math.hypot(dy, dx)
    least = min(costs.values())
    return min((v for v, cost in costs.items() if cost <= least + 1e-6), key=lambda v: math.hypot(*v))


def test_block_motion_against_a_search_by_hand():
    generator = torch.Generator().manual_seed(3)
    for trial in range(8):
        previous = torch.rand(1, 3, 7, 7, generator=generator) * 2 - 1
        shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
        current = torch.roll(previous, shift, dims=(2, 3)) + 0.3 * torch.randn(1, 3, 7, 7, generator=generator)
        for radius, patch, penalty in ((2, 3, 0.01), (1, 5, 0.0), (3, 1, 0.05)):
            found = block_motion(current, previous, radius, patch, penalty)
            for y, x in ((3, 3), (0, 0), (6, 1), (2, 6)):
                expected = motion_by_hand(current[0], previous[0], y, x, radius, patch, penalty)
                assert tuple(found[0, :, y, x].tolist()) == expected, (trial, y, x)
    with pytest.raises(ValueError, match="expected radius >= 0 and an odd patch"):
        block_motion(current, previous, 2, 4, 0.0)


def texture(size: int, generator: torch.Generator) -> torch.Tensor:
    """(3, size, size) smooth random texture in [-1, 1], distinct enough everywhere for a 5×5 match."""
    coarse = torch.rand(1, 3, size // 4, size // 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]


def test_warp_moves_the_last_context_frame_as_the_decoding_moves():
    """A decoding that slides a blurred texture 2 pixels right and 1 down a frame: the warp shows the given
    frame's own, sharp texture slid the same way, beyond the search radius by chaining frame after frame."""
    generator = torch.Generator().manual_seed(0)
    sharp = texture(48, generator) + 0.2 * torch.randn(3, 48, 48, generator=generator)  # detail the codes lose
    blurred = torch.nn.functional.avg_pool2d(sharp[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    frames, context, step = 7, 3, (1, 2)
    slid = lambda image, t: torch.roll(image, (step[0] * t, step[1] * t), dims=(1, 2))
    clips_ = torch.stack([slid(sharp, t - context + 1) for t in range(frames)], 1)[None]  # (1, 3, T, H, W)
    decoded = torch.stack([slid(blurred, t - context + 1) for t in range(frames)], 1)[None, None]
    warped = warp_along_decoding(decoded, clips_, context, radius=3)
    assert torch.equal(warped[0, 0, :, :context], clips_[0, :, :context])
    inside = (slice(None), slice(12, 36), slice(12, 36))  # far from the rolled-in edges
    for t in range(context, frames):  # frame 6 has moved 8 pixels: more than the radius of 3
        assert torch.equal(warped[0, 0, :, t][inside], slid(sharp, t - context + 1)[inside]), t
    # The codes alone, or the known error added in place, leave the blur or put the detail in the wrong place.
    assert not torch.allclose(anchor_on_context(decoded, clips_, context)[0, 0, :, -1][inside],
                              clips_[0, :, -1][inside], atol=0.05)
    # A decoding that stands still is copy-last-frame; so is a search radius of 0.
    still = decoded[:, :, :, context - 1 : context].expand(-1, -1, -1, frames, -1, -1)
    last = clips_[:, None, :, context - 1 : context].expand(-1, 1, -1, frames - context, -1, -1)
    assert torch.equal(warp_along_decoding(still, clips_, context)[:, :, :, context:], last)
    assert torch.equal(warp_along_decoding(decoded, clips_, context, radius=0)[:, :, :, context:], last)
    for bad in (0, 8):
        with pytest.raises(ValueError, match=f"context={bad}: expected 1 to 7 frames"):
            warp_along_decoding(decoded, clips_, bad)


def test_anchor_on_context_against_a_frame_by_frame_reference():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 3, 8, 5, 5, generator=generator) * 2 - 1  # (B, 3, T, H, W)
    # (B, S, 3, F, H, W), a rollout past T: small changes from frame 3 in some pixels, large in others
    decoded = truth[:, None, :, 3:4].repeat(1, 3, 1, 12, 1, 1) + 0.01 * torch.randn(2, 3, 3, 12, 5, 5,
                                                                                      generator=generator)
    decoded[:, :, :, 4:, :, :2] += 1.0  # what has moved into the first two columns after the context
    for tolerance in (0.2, 0.05, math.inf):
        anchored = anchor_on_context(decoded, truth, 4, tolerance)
        weights = []
        for b in range(2):
            for s in range(3):
                error = truth[b, :, 3] - decoded[b, s, :, 3]
                for t in range(12):
                    change = (decoded[b, s, :, t] - decoded[b, s, :, 3]).abs().mean(0)  # (H, W)
                    weight = (torch.ones_like(change) if math.isinf(tolerance)
                              else torch.exp(-((change / tolerance) ** 2)))
                    expected = truth[b, :, t] if t < 4 else decoded[b, s, :, t] + weight * error
                    assert torch.allclose(anchored[b, s, :, t], expected, atol=1e-6)
                    weights.append(weight)
        # the gate holds on where the decoding barely changes and lets go where it changes a lot
        after = torch.stack(weights).view(2, 3, 12, 5, 5)[:, :, 4:]  # (B, S, F - C, H, W)
        assert after[..., 2:].mean() > 0.5 and (math.isinf(tolerance) or after[..., :2].max() < 1e-6)
    # A perfect decoding stays the truth; a decoding in which nothing changes is copy-last-frame.
    assert torch.allclose(anchor_on_context(truth[:, None], truth, 4), truth[:, None], atol=1e-6)
    still = decoded[:, :, :, 3:4].expand(-1, -1, -1, 12, -1, -1)
    assert torch.allclose(anchor_on_context(still, truth, 4)[:, :, :, 4:],
                          truth[:, None, :, 3:4].expand(-1, 3, -1, 8, -1, -1), atol=1e-6)
    for context in (0, 9):
        with pytest.raises(ValueError, match=f"context={context}: expected 1 to 8 frames"):
            anchor_on_context(decoded, truth, context)
    with pytest.raises(ValueError, match="tolerance=0: expected a positive change"):
        anchor_on_context(decoded, truth, 4, tolerance=0)


@pytest.mark.parametrize("context", [1, 2, 3, 6, 8, 12, -4])
def test_misaligned_context_sizes_list_the_sizes_that_work(folder, context):
    with pytest.raises(ValueError, match=rf"context={context} .*use one of \[0, 4\]"):
        check_context(context, CLIP_FRAMES)
    with pytest.raises(ValueError, match=r"use one of \[0, 4\]"):
        run(folder, clips(frames=max(context, CLIP_FRAMES)), context=context)
    if 0 < context <= CLIP_FRAMES:
        with pytest.raises(ValueError, match=r"use one of \[0, 4\]"):
            encode_context(folder.vqvae.model, clips()[:, :, :context], CLIP_FRAMES)


def test_a_folder_without_priors_is_refused(folder):
    without = ModelFolder(folder.vqvae, folder.top, None, "x")
    with pytest.raises(ValueError, match="no bottom prior"):
        run(folder=without, video=clips())


@pytest.mark.parametrize(
    ("context_top", "total_top", "window_top", "expected"),
    [
        (1, 2, 2, [(0, 1, 2)]),
        (1, 1, 2, [(0, 1, 2)]),  # fewer frames than a window: one window, cropped afterwards
        (1, 5, 2, [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5)]),
        # the thesis's 16-frame clips: 8 context frames, 64 frames out
        (2, 16, 4, [(0, 2, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10), (8, 10, 12), (10, 12, 14), (12, 14, 16)]),
        (2, 7, 4, [(0, 2, 4), (2, 4, 6), (3, 6, 7)]),  # the last window keeps 3 frames rather than overrun
        (0, 9, 3, [(0, 0, 3), (1, 3, 4), (2, 4, 5), (3, 5, 6), (4, 6, 7), (5, 7, 8), (6, 8, 9)]),
    ],
)
def test_rollout_windows(context_top, total_top, window_top, expected):
    assert [tuple(w) for w in _windows(context_top, total_top, window_top)] == expected


def test_rollout_makes_the_requested_frames_and_extends_the_first_window(folder):
    video = clips(b=1)
    short = run(folder, video, frames=CLIP_FRAMES, samples=2)
    long = run(folder, video, frames=20, samples=2)
    assert long.video.shape == (1, 2, 3, 20, SIZE, SIZE)
    assert long.codes.top.shape == (1, 2, 5, 2, 2) and long.codes.bottom.shape == (1, 2, 10, 4, 4)
    # One generator draws window after window: the first window is the 8-frame prediction itself.
    assert torch.equal(long.codes.top[:, :, :2], short.codes.top)
    assert torch.equal(long.codes.bottom[:, :, :4], short.codes.bottom)
    # Per sequence: 1 top frame of 2×2 and 2 bottom frames of 4×4 per window, 4 windows; 2 sequences.
    assert short.positions == 2 * (4 + 32)
    assert long.positions == 2 * 4 * (4 + 32)
    assert long.positions_per_second > 0
    # The input has 8 frames: the mixed panel covers those only.
    assert long.generated_top.shape == (1, 2, 3, CLIP_FRAMES, SIZE, SIZE)
    cropped = run(folder, video, frames=4 + 4, samples=2)
    assert cropped.video.shape[3] == 8


def test_a_rollout_shorter_than_a_clip_is_cropped(folder):
    vqvae = folder.vqvae.model
    prediction = run(folder, clips(b=1), context=0, frames=4)
    assert prediction.video.shape == (1, 1, 3, 4, SIZE, SIZE)
    assert prediction.codes.top.shape == (1, 1, 1, 2, 2)
    decoded = vqvae.decode_codes(prediction.codes.top[:, 0], prediction.codes.bottom[:, 0])
    assert torch.allclose(prediction.video[:, 0], decoded, atol=1e-6)


def test_a_fixed_seed_repeats_and_another_seed_differs(folder):
    video = clips()
    first, again = run(folder, video, seed=7), run(folder, video, seed=7)
    assert torch.equal(first.codes.bottom, again.codes.bottom)
    assert torch.equal(first.video, again.video)
    other = run(folder, video, seed=8)
    assert not torch.equal(first.codes.bottom, other.codes.bottom)


def test_every_sampling_method_predicts_the_same(folder, draw_margins):
    video = clips(b=1)
    naive = run(folder, video, frames=12, method="naive")
    # The same codes on any CPU: no draw lies within the methods' rounding of a cumulative boundary.
    assert draw_margins and min(margin.min().item() for margin in draw_margins) > 2e-5
    for method in ("incremental", "fused"):
        other = run(folder, video, frames=12, method=method)
        assert torch.equal(other.codes.top, naive.codes.top), method
        assert torch.equal(other.codes.bottom, naive.codes.bottom), method


def test_context_zero_samples_without_looking_at_the_input(folder):
    first = run(folder, clips(seed=3), context=0)
    second = run(folder, clips(seed=4), context=0)
    assert torch.equal(first.codes.top, second.codes.top)
    assert torch.equal(first.video, second.video)
    assert first.positions == 2 * (8 + 64)


def test_padding_cost_is_nothing_for_a_still_clip_and_counts_changed_codes(folder):
    vqvae = folder.vqvae.model
    still = clips(b=1)[:, :, :1].expand(-1, -1, CLIP_FRAMES, -1, -1)  # padding repeats the same frame
    cost = padding_cost(vqvae, still, 4)
    assert cost.top_changed == 0 and cost.bottom_changed == 0
    assert cost.padded_psnr == cost.whole_clip_psnr

    moving = clips()
    cost = padding_cost(vqvae, moving, 4)
    whole = vqvae.encode(moving)
    alone = encode_context(vqvae, moving[:, :, :4], CLIP_FRAMES)
    assert cost.bottom_changed == (alone.bottom != whole.bottom[:, :2]).float().mean().item() > 0
    assert cost.padded_psnr != cost.whole_clip_psnr
    with pytest.raises(ValueError, match="no context frames"):
        padding_cost(vqvae, moving, 0)


def test_bottom_temperature_changes_only_the_bottom_prior_and_near_zero_takes_its_most_likely_codes(folder):
    video = clips(b=1)
    base = run(folder, video, seed=5)
    same = run(folder, video, seed=5, bottom_temperature=1.0)  # the default temperature, said explicitly
    assert torch.equal(same.codes.top, base.codes.top) and torch.equal(same.codes.bottom, base.codes.bottom)
    cold = run(folder, video, seed=5, bottom_temperature=1e-6, method="naive")
    assert torch.equal(cold.codes.top, base.codes.top)  # one window: every top code is drawn before the bottom
    assert not torch.equal(cold.codes.bottom, base.codes.bottom)
    # Each sampled bottom code is a most likely one given the codes before it, by the full forward pass, up to
    # the 1e-5 by which the naive sampler's passes and this one may differ (codes that close may go either way).
    top, bottom = cold.codes.top[:, 0], cold.codes.bottom[:, 0]  # (1, T/4, ...), (1, T/2, ...)
    with torch.no_grad():
        log_probs = folder.bottom.model.log_probs(bottom, top)  # (1, K, T/2, H/4, W/4)
    shortfall = log_probs.amax(1) - log_probs.gather(1, bottom[:, None]).squeeze(1)  # (1, T/2, H/4, W/4)
    known = 2  # context 4 frames: the first 2 bottom frames are encoded, not sampled
    assert shortfall[:, known:].max() <= 1e-5, shortfall


def test_continuation_scores_against_a_computation_by_hand(folder):
    prior = folder.top.model
    t, h, w = prior.config.shape
    k = prior.config.num_codes
    generator = torch.Generator().manual_seed(3)
    codebook = torch.randn(k, 3, generator=generator)
    codes = torch.randint(0, k, (5, t, h, w), generator=generator)
    codes[:2, 1:] = codes[:2, :1]  # two still clips, which repetition continues exactly
    scores = continuation_scores(prior, codes, codebook, 1, temperature=0.7,
                                 generator=torch.Generator().manual_seed(0))

    def by_hand(produced: torch.Tensor) -> tuple[list[float], list[float]]:  # produced (5, t - 1, h, w)
        distances, equal = [], []
        for f in range(t - 1):
            pairs = [(produced[n, f, y, x], codes[n, 1 + f, y, x]) for n in range(5) for y in range(h)
                     for x in range(w)]
            distances.append(sum(float(((codebook[a] - codebook[b]) ** 2).sum()) for a, b in pairs) / len(pairs))
            equal.append(sum(int(a == b) for a, b in pairs) / len(pairs))
        return distances, equal

    sampled = sample(prior, codes.clone(), start=h * w, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled[:, :1], codes[:, :1])  # the context is kept
    expected = {"repeat": codes[:, :1].expand(-1, t - 1, -1, -1), "sampled": sampled[:, 1:],
                "teacher_forced": prior.score(codes)[1][:, 1:], "another_clip": codes[[4, 0, 1, 2, 3], 1:]}
    assert set(scores) == set(expected)
    for name, produced in expected.items():
        distances, equal = by_hand(produced)
        assert scores[name]["distance"] == pytest.approx(distances, rel=1e-5), name
        assert scores[name]["equal"] == pytest.approx(equal), name
    assert scores["repeat"]["distance"][0] < scores["another_clip"]["distance"][0]  # the still clips count 0
    with pytest.raises(ValueError, match="context=0"):
        continuation_scores(prior, codes, codebook, 0)
    with pytest.raises(ValueError, match="expected codes of one shape"):
        codebook_distance(codes[:, 1:], codes, codebook)


# --- the context reader -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_reader(folder) -> ModelFolder:
    """`folder` with a context reader of 4 frames, which predicts the clip's second top latent frame."""
    reader = tiny_reader()
    return replace(folder, reader=LoadedReader(reader, reader.config, "reader", "vqvae"))


def test_the_reader_draws_the_top_codes_after_the_context_from_the_context_frames(with_reader):
    video = clips()
    prediction = run(with_reader, video, samples=3, top_k=1)
    assert prediction.top_from == ("reader",)
    with torch.no_grad():
        most_likely = with_reader.reader.model(video[:, :, :4]).argmax(1)  # (B, 1, 2, 2)
    assert torch.equal(prediction.codes.top[:, :, 1:], most_likely[:, None].expand(-1, 3, -1, -1, -1))
    own = run(with_reader, video, samples=3, top_k=1, reader=False)  # the context's codes are the same
    assert torch.equal(prediction.codes.top[:, :, :1], own.codes.top[:, :, :1])
    assert torch.equal(prediction.codes.bottom[:, :, :2], own.codes.bottom[:, :, :2])
    assert not torch.equal(prediction.codes.top, own.codes.top)
    drawn = run(with_reader, video, samples=16)  # at temperature 1, the samples' top codes differ
    assert drawn.codes.top[:, :, 1:].flatten(2).unique(dim=1).shape[1] > 1
    # the reader at temperature 0 alone: its most likely codes in every sample, the bottom codes still drawn
    cold = run(with_reader, video, samples=16, reader_temperature=0)
    assert torch.equal(cold.codes.top[:, :, 1:], most_likely[:, None].expand(-1, 16, -1, -1, -1))
    assert cold.codes.bottom[:, :, 2:].flatten(2).unique(dim=1).shape[1] > 1


def test_without_the_reader_the_prediction_is_the_top_priors_as_before(folder, with_reader):
    video = clips()
    without, before = run(with_reader, video, samples=2, reader=False), run(folder, video, samples=2)
    assert without.top_from == before.top_from == ("top prior",)
    assert torch.equal(without.codes.top, before.codes.top) and torch.equal(without.video, before.video)
    # a context the reader does not read falls back on the top prior, unless the reader is asked for
    assert run(with_reader, video, context=0).top_from == ("top prior",)
    with pytest.raises(ValueError, match="context=0: the model folder's context reader reads 4 frames"):
        run(with_reader, video, context=0, reader=True)
    with pytest.raises(ValueError, match="no context reader"):
        run(folder, video, reader=True)


def test_a_rollout_gives_the_reader_the_frames_decoded_before_each_window(with_reader):
    vqvae, reader = with_reader.vqvae.model, with_reader.reader.model
    long = run(with_reader, clips(b=1), frames=16, samples=2, top_k=1)
    assert long.top_from == ("reader",) * 3  # windows of 2 top frames, 1 sampled in each
    top, bottom = long.codes.top[0], long.codes.bottom[0]  # (S, 4, 2, 2), (S, 8, 4, 4)
    with torch.no_grad():
        for known in (2, 3):  # each later window: the 4 frames of the top frame before it, decoded
            frames = vqvae.decode_codes(top[:, known - 1 : known], bottom[:, 2 * known - 2 : 2 * known])
            assert torch.equal(top[:, known : known + 1], reader(frames.clamp(-1, 1)).argmax(1))


def test_a_second_reading_reads_each_later_latent_frame_from_the_frames_just_before_it():
    """16-frame clips, 8 of context: the reader's first reading gives latent frames 2 and 3; the second reads
    frames 4-7 (the input's) and 8-11 (decoded from the first reading's codes of the whole window) for latent
    frame 3, and the bottom codes of latent frame 3 are drawn again."""
    vqvae = tiny_vqvae()
    top, bottom = tiny_priors(frames=16)
    reader = tiny_reader(context=8, frames=16)
    folder16 = ModelFolder(LoadedVQVAE(vqvae, vqvae.config, "vqvae", {"frames": 16, "size": SIZE}),
                           LoadedPrior(top, top.config, "top", "top", "vqvae"),
                           LoadedPrior(bottom, bottom.config, "bottom", "bottom", "vqvae"), "folder16",
                           LoadedReader(reader, reader.config, "reader", "vqvae"))
    video = clips(frames=16)
    once, twice = (run(folder16, video, context=8, frames=16, samples=2, reader_temperature=0, reader_passes=passes)
                   for passes in (1, 2))
    assert twice.top_from == ("reader",)
    assert torch.equal(twice.codes.top[:, :, :3], once.codes.top[:, :, :3])  # the first reading's latent frame 2
    assert torch.equal(twice.codes.bottom[:, :, :6], once.codes.bottom[:, :, :6])  # and its bottom codes
    first_top, first_bottom = once.codes.top.flatten(0, 1), once.codes.bottom.flatten(0, 1)  # (B*S, ...)
    with torch.no_grad():
        decoded = vqvae.decode_codes(first_top, first_bottom).clamp(-1, 1)  # the whole window
        read = torch.cat([video[:, :, 4:8].repeat_interleave(2, 0), decoded[:, :, 8:12]], dim=2)
        assert torch.equal(twice.codes.top[:, :, 3].flatten(0, 1), reader(read).argmax(1)[:, 0])
    assert twice.positions == once.positions + 4 * (4 + 2 * 16)  # 4 sequences: a top frame, two bottom frames
    changed = video.clone()
    changed[:, :, 8:] = -changed[:, :, 8:]  # frames after the context change nothing
    assert torch.equal(run(folder16, changed, context=8, frames=16, samples=2, reader_temperature=0,
                           reader_passes=2).codes.top, twice.codes.top)
    with pytest.raises(ValueError, match="reader_passes=3"):
        run(folder16, video, context=8, frames=16, reader_passes=3)
