import pytest
import torch

from vqvid.sampling import ancestral


@pytest.fixture
def draw_margins(monkeypatch):
    """A list that fills, as `vqvid.sampling.sample` draws, with each step's (B,) distance between its uniform
    number and the nearest cumulative probability of its distribution (top_k None, a generator given).

    Two sampling paths whose log-probabilities agree to float rounding (about 1e-6) draw the same codes from the
    same generator state unless a uniform lies that close to a cumulative boundary. A test that asks them for
    equal codes checks with this that its inputs keep every draw far from one: the equality then holds on any
    CPU, rather than on the CPU where the test happened to pass."""
    margins = []
    real_draw = ancestral.draw

    def recording_draw(log_probs, *, temperature=1.0, top_k=None, generator=None):
        if top_k is None and generator is not None:
            replay = torch.Generator(device=generator.device)
            replay.set_state(generator.get_state())  # the uniform `draw` is about to take
            uniform = torch.rand(log_probs.shape[0], 1, generator=replay, device=generator.device)
            cumulative = (log_probs / temperature).softmax(dim=-1).cumsum(dim=-1)
            margins.append((cumulative - uniform.to(log_probs)).abs().min(dim=-1).values)
        return real_draw(log_probs, temperature=temperature, top_k=top_k, generator=generator)

    monkeypatch.setattr(ancestral, "draw", recording_draw)
    return margins
