"""The context reader: its shapes, what it reads (by gradients) and how it draws codes."""

import pytest
import torch

from vqvid.config import ConfigError, from_dict
from vqvid.models.reader import STEMS, ContextReader, ReaderConfig


@pytest.mark.parametrize("stem", STEMS)
def test_it_predicts_every_top_code_after_the_context_at_once(stem):
    reader = ContextReader(ReaderConfig(num_codes=16, context=8, frames=16, channels=8, layers=2, stem=stem))
    logits = reader(torch.zeros(2, 3, 8, 32, 48))
    assert logits.shape == (2, 16, 2, 4, 6)  # (B, K, latent frames 2-3, H/8, W/8)


@pytest.mark.parametrize("stem", STEMS)
def test_every_context_frame_and_pixel_reaches_the_logits(stem):
    """No blind spot: the gradient of the logits reaches every frame and every pixel of the context."""
    torch.manual_seed(0)
    reader = ContextReader(ReaderConfig(num_codes=16, context=8, frames=16, channels=8, layers=1, stem=stem))
    frames = torch.randn(1, 3, 8, 16, 16, requires_grad=True)
    reader(frames).sum().backward()
    reached = frames.grad.abs().sum(1)  # (1, 8, 16, 16)
    assert (reached > 0).all()


def test_it_reads_the_context_and_nothing_else():
    reader = ContextReader(ReaderConfig(num_codes=16, context=8, frames=16, channels=8, layers=1))
    for shape in ((1, 3, 16, 16, 16), (1, 3, 4, 16, 16), (1, 3, 8, 12, 16), (3, 8, 16, 16)):
        with pytest.raises(ValueError, match=r"reads \(B, 3, 8, H, W\) frames"):
            reader(torch.zeros(shape))


def test_its_config_refuses_what_cannot_be_built():
    for fields, message in (({"context": 6}, "context=6"), ({"context": 16, "frames": 16}, "frames=16"),
                            ({"stem": "vit"}, "stem='vit'"), ({"frame_kernel": 2}, "frame_kernel=2"),
                            ({"channels": 0}, "channels=0")):
        with pytest.raises(ConfigError, match=message):
            from_dict(ReaderConfig, fields, "model")


def test_sampling_draws_each_clips_codes_samples_times_clip_major():
    torch.manual_seed(0)
    reader = ContextReader(ReaderConfig(num_codes=16, context=4, frames=8, channels=8, layers=1)).eval()
    frames = torch.randn(2, 3, 4, 16, 16)
    with torch.no_grad():
        most_likely = reader(frames).argmax(1)  # (2, 1, 2, 2)
        assert torch.equal(reader.sample_codes(frames, top_k=1, samples=3), most_likely.repeat_interleave(3, 0))
        cold = reader.sample_codes(frames, temperature=1e-4, samples=2, generator=torch.Generator().manual_seed(0))
        assert torch.equal(cold, most_likely.repeat_interleave(2, 0))
        drawn = [reader.sample_codes(frames, samples=64, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], drawn[2])  # a seed draws the same again
    assert drawn[0].shape == (128, 1, 2, 2) and drawn[0].unique().numel() > 1
    with torch.no_grad():  # top_k 2: only each position's two most likely codes
        two = reader.sample_codes(frames, top_k=2, samples=64, generator=torch.Generator().manual_seed(0))
        best_two = reader(frames).topk(2, dim=1).indices.repeat_interleave(64, 0)  # (128, 2, 1, 2, 2)
    assert (two[:, None] == best_two).any(1).all()
    with torch.no_grad():  # temperature 0: the most likely codes
        assert torch.equal(reader.sample_codes(frames, temperature=0, samples=2), most_likely.repeat_interleave(2, 0))
    with pytest.raises(ValueError, match="temperature=-1"):
        reader.sample_codes(frames, temperature=-1)
