"""PixelSNAIL priors: causality and the absence of a blind spot, shown by gradients; inputs; learning."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pytest
import torch
import torch.nn.functional as F

from vqvid.models.pixelsnail import (
    CausalSelfAttention,
    PixelSNAIL,
    PixelSNAILConfig,
    reference_causal_attention,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def top_config(**overrides) -> PixelSNAILConfig:
    # 2 blocks of kernel 3 reach 6 frames/rows/columns back and 5 sideways: the whole 3×4×4 grid.
    config = PixelSNAILConfig(num_codes=8, shape=(3, 4, 4), channels=16, n_blocks=2, n_res_blocks=1,
                              kernel_size=3, attention=True, n_heads=2, key_channels=8, value_channels=8,
                              dropout=0.0, embed_dim=8)
    return replace(config, **overrides)


def bottom_config(**overrides) -> PixelSNAILConfig:
    config = top_config(shape=(4, 4, 4), condition_num_codes=6, condition_shape=(2, 2, 2),
                        condition_channels=8, n_cond_res_blocks=1)
    return replace(config, **overrides)


def make_prior(config: PixelSNAILConfig, seed: int = 0) -> PixelSNAIL:
    torch.manual_seed(seed)
    return PixelSNAIL(config).eval()


def embedded_inputs(prior: PixelSNAIL, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Random codes, and their embeddings (and the condition's) as leaves that gradients can be taken
    against."""
    config = prior.config
    codes = torch.randint(0, config.num_codes, (batch, *config.shape))
    embedded = prior.embed(codes).detach().requires_grad_()
    if not config.conditional:
        return codes, embedded, None
    condition = torch.randint(0, config.condition_num_codes, (batch, *config.condition_shape))
    return codes, embedded, prior.embed_condition(condition).detach().requires_grad_()


def dependence(prior: PixelSNAIL, position: tuple[int, int, int], code: int = 1):
    """Per-position gradient magnitude of log p(code at `position`) w.r.t. the input embeddings (T, H, W) and,
    for the bottom prior, w.r.t. the condition embeddings (T', H', W'). A copy head's pointer reads the
    embeddings of the codes it may copy from the same input, so its reach shows too."""
    codes, embedded, condition = embedded_inputs(prior)
    log_probs = F.log_softmax(prior.forward_embedded(embedded, condition, codes=codes), dim=1)
    leaves = [embedded] if condition is None else [embedded, condition]
    grads = torch.autograd.grad(log_probs[0, code, position[0], position[1], position[2]], leaves)
    return [g.abs().sum(dim=1)[0] for g in grads]


def randomise_copy_head(prior: PixelSNAIL, seed: int = 1) -> None:
    """Random weights in the copy head, which starts with a pointer that reads nothing (scaled so that the
    pointer's scores span a few units, as in trained priors, rather than amplify float rounding)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in prior.copy.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))


def earlier_mask(shape: tuple[int, int, int], position: tuple[int, int, int]) -> torch.Tensor:
    """True at the positions strictly before `position` in (t, h, w) raster order."""
    flat = torch.arange(math.prod(shape)).reshape(shape)
    return flat < flat[position]


def edge_positions(shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """First and last positions of rows and frames, and one inside."""
    t, h, w = shape
    return [(0, 0, 0), (0, 0, w - 1), (0, 1, 0), (1, 0, 0), (1, 1, 1), (1, h - 1, w - 1), (t - 1, h - 1, 0),
            (t - 1, h - 1, w - 1)]


@pytest.mark.parametrize(("attention", "tied_head", "copy_head"),
                         [(True, False, False), (False, False, False), (True, True, False), (True, True, True),
                          (False, False, True)])
@pytest.mark.parametrize("level", ["top", "bottom"])
def test_each_position_depends_on_every_earlier_position_and_nothing_else(level, attention, tied_head, copy_head):
    # A tied head uses the code embeddings as output weights, parameters rather than inputs: a position still
    # sees only the codes before it.
    config = (top_config if level == "top" else bottom_config)(attention=attention, tied_head=tied_head,
                                                               copy_head=copy_head)
    prior = make_prior(config)
    if copy_head:  # trained weights, not the zero start, so that the pointer reads what it copies
        randomise_copy_head(prior)
    for position in edge_positions(config.shape):
        magnitude = dependence(prior, position)[0]
        earlier = earlier_mask(config.shape, position)
        assert torch.all(magnitude[~earlier] == 0), f"{position} depends on itself or a later position"
        blind = (earlier & (magnitude == 0)).nonzero().tolist()
        assert not blind, f"{position} does not see earlier positions {blind}"


def test_without_attention_the_reach_is_exactly_the_convolutions_receptive_field():
    # One block of one residual layer, kernel 3 (2 causal taps): the strict stems reach 2 back along their
    # axis and 1 sideways, each of the 2 convolutions of a residual layer 1 more. The horizontal stream at
    # (t, h, w) so reaches columns w-4..w-1. It mixes in the vertical stream at columns w-1 and w, which
    # reaches rows h-4..h-1 and 3 columns sideways: w-4..w+3. The vertical stream mixes in the frame stream at
    # rows h-1..h and columns w-1..w+1, which reaches frames t-4..t-1 and 3 rows and columns sideways.
    config = top_config(shape=(6, 9, 11), n_blocks=1, attention=False)
    t, h, w = 5, 5, 6
    expected = torch.zeros(config.shape, dtype=torch.bool)
    expected[t, h, w - 4:w] = True
    expected[t, h - 4:h, w - 4:w + 4] = True
    expected[t - 4:t, h - 4:h + 4, w - 5:w + 5] = True

    magnitude = dependence(make_prior(config), (t, h, w))[0]
    assert torch.equal(magnitude > 0, expected)


def test_attention_reaches_what_the_convolutions_do_not():
    config = top_config(shape=(2, 3, 12), n_blocks=1)
    position = (1, 2, 11)
    earlier = earlier_mask(config.shape, position)
    with_attention = dependence(make_prior(config), position)[0]
    without_attention = dependence(make_prior(replace(config, attention=False)), position)[0]
    assert torch.all(with_attention[earlier] > 0) and torch.all(with_attention[~earlier] == 0)
    assert torch.any(without_attention[earlier] == 0)


@pytest.mark.parametrize("attention", [True, False])
def test_bottom_prior_sees_every_top_code_at_every_position(attention):
    config = bottom_config(attention=attention)
    prior = make_prior(config)
    for position in edge_positions(config.shape):
        condition_magnitude = dependence(prior, position)[1]
        assert torch.all(condition_magnitude > 0), f"{position} misses top codes"


def test_log_probs_are_normalised_distributions_of_the_right_shape():
    config = bottom_config()
    prior = make_prior(config)
    codes = torch.randint(0, config.num_codes, (3, *config.shape))
    condition = torch.randint(0, config.condition_num_codes, (3, *config.condition_shape))
    log_probs = prior.log_probs(codes, condition)
    assert log_probs.shape == (3, config.num_codes, *config.shape)
    torch.testing.assert_close(log_probs.logsumexp(dim=1), torch.zeros(3, *config.shape), atol=1e-5, rtol=0)


@pytest.mark.parametrize("level", ["top", "bottom"])
def test_classes_last_logits_are_the_same_logits_laid_out_for_the_loss(level):
    config = top_config() if level == "top" else bottom_config()
    prior = make_prior(config)
    codes = torch.randint(0, config.num_codes, (2, *config.shape))
    condition = torch.randint(0, config.condition_num_codes, (2, *config.condition_shape)) \
        if config.conditional else None
    logits = prior(codes, condition)  # (B, K, T, H, W)
    last = prior(codes, condition, classes_last=True)  # (B, T, H, W, K)
    assert last.shape == (2, *config.shape, config.num_codes) and last.is_contiguous()
    torch.testing.assert_close(last, logits.movedim(1, -1), atol=1e-6, rtol=0)
    nll = F.cross_entropy(last.flatten(0, -2), codes.flatten())  # the training loss's layout
    torch.testing.assert_close(nll, F.cross_entropy(logits, codes), atol=1e-6, rtol=0)


@pytest.mark.parametrize("copy_head", [False, True])
@pytest.mark.parametrize("level", ["top", "bottom"])
def test_score_is_the_full_distribution_read_at_the_codes_and_its_argmax(level, copy_head):
    config = (top_config if level == "top" else bottom_config)(tied_head=True, copy_head=copy_head)
    prior = make_prior(config)
    if copy_head:
        randomise_copy_head(prior)
        with torch.no_grad():
            prior.copy.gate.bias.fill_(1.0)  # copies about as often as not: both parts of the mixture count
    codes = torch.randint(0, config.num_codes, (3, *config.shape))
    condition = torch.randint(0, config.condition_num_codes, (3, *config.condition_shape)) \
        if config.conditional else None
    full = prior.log_probs(codes, condition)  # (B, K, T, H, W), the reference
    log_probs, most_likely = prior.score(codes, condition)
    torch.testing.assert_close(log_probs, full.gather(1, codes[:, None]).squeeze(1), atol=1e-5, rtol=0)
    # A most likely code, up to the 1e-5 by which the two computations may differ
    shortfall = full.amax(1) - full.gather(1, most_likely[:, None]).squeeze(1)
    assert shortfall.max() <= 1e-5 and most_likely.dtype == torch.int64

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        prior.zero_grad()
        loss.backward(retain_graph=True)
        return [p.grad.clone() for p in prior.parameters() if p.grad is not None]

    # and the gradients a training step takes from it are the full distribution's
    scored, reference = gradients(-log_probs.mean()), gradients(-full.gather(1, codes[:, None]).mean())
    assert len(scored) == len(reference) > 0
    for got, expected in zip(scored, reference, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tied_head", [False, True])
def test_the_output_layer_is_the_heads_linear_map_that_the_fused_sampler_reads(tied_head):
    config = top_config(tied_head=tied_head)
    prior = make_prior(config)
    features = torch.randn(3, config.channels, 2, 2, 2)
    weight, bias = prior.output_layer()
    assert weight.shape == (config.num_codes, config.channels) and bias.shape == (config.num_codes,)
    by_hand = torch.einsum("kc,bcthw->bkthw", weight, F.elu(features)) + bias[:, None, None, None]
    torch.testing.assert_close(prior.head_logits(features), by_hand, atol=1e-5, rtol=1e-5)


def test_a_tied_head_scores_each_code_by_its_embedding():
    """Tied, the logit of code k is the head's projection of the features dotted with the embedding of k, plus
    k's own bias: two codes given the same embedding and bias get the same logit everywhere."""
    config = top_config(tied_head=True)
    prior = make_prior(config)
    project = prior.head[-1]
    assert project.out_features == config.embed_dim and prior.code_bias.shape == (config.num_codes,)
    with torch.no_grad():
        prior.embedding.weight[3] = prior.embedding.weight[5]
        prior.code_bias[3] = prior.code_bias[5]
    codes = torch.randint(0, config.num_codes, (2, *config.shape))
    logits = prior(codes)
    torch.testing.assert_close(logits[:, 3], logits[:, 5], atol=0, rtol=0)
    assert not torch.allclose(logits[:, 3], logits[:, 4])
    features = torch.randn(1, config.channels, 1, 1, 1)
    by_hand = project(F.elu(features)).flatten() @ prior.embedding.weight.t() + prior.code_bias
    torch.testing.assert_close(prior.head_logits(features).flatten(), by_hand, atol=1e-5, rtol=1e-5)


def test_sdpa_attention_matches_an_explicit_masked_matrix():
    # Values wider than keys, as in PixelSNAIL: the path that pads queries and keys to the value width.
    prior = make_prior(top_config(key_channels=8, value_channels=24))
    codes = torch.randint(0, 8, (2, 3, 4, 4))
    logits = prior(codes)
    for module in prior.modules():
        if isinstance(module, CausalSelfAttention):
            module.causal_attention = reference_causal_attention
    torch.testing.assert_close(prior(codes), logits, atol=1e-5, rtol=1e-5)


def test_dropout_acts_only_in_training():
    prior = make_prior(top_config(dropout=0.5))
    codes = torch.randint(0, 8, (2, 3, 4, 4))
    torch.testing.assert_close(prior(codes), prior(codes))
    prior.train()
    assert not torch.allclose(prior(codes), prior(codes))


def test_config_survives_a_json_round_trip():
    config = bottom_config()
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    assert PixelSNAILConfig(**as_json) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channels": 0}, "channels"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"shape": (4, 8)}, "shape"),
        ({"key_channels": 6, "n_heads": 4}, "key_channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"condition_num_codes": 8}, "together"),
        ({"condition_num_codes": 8, "condition_shape": (2, 2, 3)}, "half"),
    ],
)
def test_bad_config_is_rejected_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        top_config(**overrides)


def test_bad_inputs_are_rejected_with_a_message():
    top = make_prior(top_config())
    bottom = make_prior(bottom_config())
    codes = torch.randint(0, 8, (2, 3, 4, 4))
    condition = torch.randint(0, 6, (2, 2, 2, 2))
    bottom_codes = torch.randint(0, 8, (2, 4, 4, 4))
    cases = [
        (lambda: top(codes[:, :2]), "shape"),
        (lambda: top(codes[0]), "shape"),
        (lambda: top(codes.int()), "int64"),
        (lambda: top(codes.float()), "int64"),
        (lambda: top(codes + 8), r"\[0, 8\)"),
        (lambda: top(codes - 1), r"\[0, 8\)"),
        (lambda: top(codes, condition), "unconditional"),
        (lambda: bottom(bottom_codes), "needs top codes"),
        (lambda: bottom(bottom_codes, condition[:1]), "batch"),
        (lambda: bottom(bottom_codes, condition + 6), r"condition: codes must lie in \[0, 6\)"),
        (lambda: bottom(bottom_codes, condition[:, :1]), "condition: expected shape"),
        (lambda: top.forward_embedded(torch.zeros(1, 7, 3, 4, 4)), "embedded: expected shape"),
        (lambda: bottom.forward_embedded(torch.zeros(1, 8, 4, 4, 4)), "condition_embedded"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def train_briefly(prior: PixelSNAIL, batch, steps: int) -> None:
    """Adam at 3e-3 on `steps` batches of 16 clips from batch(16), then eval mode."""
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(steps):
        codes = batch(16)
        loss = F.cross_entropy(prior(codes), codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()


@pytest.mark.parametrize("tied_head", [False, True])
def test_a_prior_learns_a_deterministic_pattern(tied_head):
    # Each clip is one shifted pattern: after the first code, every code follows from the codes before it.
    config = top_config(shape=(2, 4, 4), channels=32, key_channels=8, value_channels=16, embed_dim=16,
                        n_heads=1, tied_head=tied_head)
    torch.manual_seed(0)
    prior = PixelSNAIL(config)
    t, h, w = torch.meshgrid(*(torch.arange(s) for s in config.shape), indexing="ij")

    def batch(size: int) -> torch.Tensor:
        offsets = torch.randint(0, config.num_codes, (size, 1, 1, 1))
        return (offsets + t + 2 * h + 3 * w) % config.num_codes

    train_briefly(prior, batch, steps=60)
    codes = batch(64)
    with torch.no_grad():
        bits = F.cross_entropy(prior(codes), codes).item() / math.log(2)
    assert bits < 1.0, f"{bits:.2f} bits per code after training, expected < 1 (3 bits untrained)"


def copy_prior(gate_bias: float | None = None) -> PixelSNAIL:
    prior = make_prior(top_config(shape=(3, 4, 5), copy_head=True, tied_head=True))
    randomise_copy_head(prior)
    if gate_bias is not None:
        with torch.no_grad():
            prior.copy.gate.weight.zero_()
            prior.copy.gate.bias.fill_(gate_bias)
    return prior


def test_a_copy_head_copies_only_codes_around_the_same_place_one_frame_before():
    prior = copy_prior(gate_bias=40.0)  # copies, nearly always
    config = prior.config
    codes = torch.randint(0, config.num_codes, (4, *config.shape))
    log_probs = prior.log_probs(codes)  # (B, K, T, H, W)
    for t, h, w in [(1, 0, 0), (1, 2, 3), (2, 3, 4), (2, 0, 4)]:
        around = codes[:, t - 1, max(h - 1, 0):h + 2, max(w - 1, 0):w + 2].flatten(1)  # (B, 4..9)
        possible = torch.zeros(4, config.num_codes, dtype=torch.bool).scatter_(1, around, True)
        mass = log_probs[:, :, t, h, w].exp()
        torch.testing.assert_close(mass[possible.logical_not()].sum(), torch.tensor(0.0), atol=1e-6, rtol=0)
        torch.testing.assert_close((mass * possible).sum(1), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(log_probs.logsumexp(dim=1), torch.zeros(4, *config.shape), atol=1e-5, rtol=0)
    # Frame 0 has nothing to copy: its distribution is the softmax alone, what the same prior without the
    # copy head gives.
    without = PixelSNAIL(replace(config, copy_head=False)).eval()
    without.load_state_dict({k: v for k, v in prior.state_dict().items() if not k.startswith("copy.")})
    torch.testing.assert_close(log_probs[:, :, 0], without.log_probs(codes)[:, :, 0], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="copy head needs the codes"):
        prior.forward_embedded(prior.embed(codes))


def test_a_copy_heads_distribution_changes_with_earlier_codes_only():
    # Gradients (above) cannot see which code values the pointer copies: change the codes instead.
    prior = copy_prior()
    config = prior.config
    codes = torch.randint(0, config.num_codes, (2, *config.shape))
    flat = torch.arange(math.prod(config.shape)).reshape(config.shape)
    for position in [(1, 0, 0), (1, 2, 3), (2, 3, 4)]:
        changed = codes.clone()
        later = flat >= flat[position]
        changed[:, later] = (codes[:, later] + 1) % config.num_codes
        torch.testing.assert_close(prior.log_probs(changed)[:, :, position[0], position[1], position[2]],
                                   prior.log_probs(codes)[:, :, position[0], position[1], position[2]],
                                   atol=1e-6, rtol=0)
        neighbour = codes.clone()
        neighbour[:, position[0] - 1, position[1], position[2]] += 1
        neighbour %= config.num_codes
        assert not torch.allclose(prior.log_probs(neighbour)[:, :, position[0], position[1], position[2]],
                                  prior.log_probs(codes)[:, :, position[0], position[1], position[2]])


def test_a_copy_head_learns_content_that_moves_long_before_the_softmax_alone_does():
    # Every frame is the one before it moved one column right, a new random code entering at the left: the
    # motion of the synthetic shapes, in code space. 64 codes: 6 bits each when guessed.
    shape = (3, 4, 6)

    def batch(size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        columns = torch.randint(0, 64, (size, shape[1], shape[2] + shape[0] - 1), generator=generator)
        return torch.stack([columns[:, :, shape[0] - 1 - t:shape[0] - 1 - t + shape[2]] for t in range(shape[0])],
                           dim=1)

    def bits_after_training(copy_head: bool) -> float:
        config = top_config(shape=shape, num_codes=64, channels=32, embed_dim=16, copy_head=copy_head,
                            tied_head=True)
        prior = make_prior(config)
        # 40 steps: the copy head then costs 0.00 bits here, the softmax alone 2.6 (80 steps: 0.2)
        train_briefly(prior, batch, steps=40)
        codes = batch(64, torch.Generator().manual_seed(99))  # held out: the same clips for both priors
        with torch.no_grad():
            nats = F.cross_entropy(prior(codes), codes, reduction="none")  # (B, T, H, W)
        return nats[:, 1:, :, 1:].mean().item() / math.log(2)  # the codes that moved in from frame t - 1

    with_copy, without = bits_after_training(True), bits_after_training(False)
    assert with_copy < 0.5 and with_copy < without / 3, \
        f"moved codes cost {with_copy:.2f} bits with the copy head, {without:.2f} without"


def pairwise_distances(points: torch.Tensor) -> torch.Tensor:
    return torch.cdist(points.double(), points.double())


@pytest.mark.parametrize("codebook_width", [4, 8, 12])  # narrower than, as wide as, wider than the embedding
def test_codebook_init_keeps_the_codebooks_geometry(codebook_width):
    """The embeddings start as the codebook's points up to one scale: every pairwise distance is kept (for a
    codebook wider than the embedding, one whose points lie in a subspace the embedding can hold)."""
    prior = make_prior(bottom_config())  # embed_dim 8, condition_channels 8
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(min(codebook_width, 8), codebook_width, generator=generator)
    codebook = torch.randn(8, basis.shape[0], generator=generator) @ basis + 3.0  # (K=8, D), off-centre
    condition_codebook = torch.randn(6, codebook_width, generator=generator)[:, :8]
    before = prior.embedding.weight.detach().clone()
    prior.init_code_embeddings(codebook, condition_codebook)
    for vectors, embedding in ((codebook, prior.embedding), (condition_codebook, prior.condition_embedding)):
        width = min(vectors.shape[1], embedding.embedding_dim)
        start = embedding.weight.detach()[:, :width]
        ratio = pairwise_distances(start) / pairwise_distances(vectors).clamp_min(1e-12)
        off_diagonal = ~torch.eye(len(vectors), dtype=torch.bool)
        torch.testing.assert_close(ratio[off_diagonal], ratio[off_diagonal].mean().expand(off_diagonal.sum()),
                                   rtol=1e-4, atol=1e-6)
        assert abs(start.std().item() - 1.0) < 1e-4 and start.mean(0).abs().max() < 1e-5
    if codebook_width < 8:  # channels beyond the codebook's width keep their random start
        torch.testing.assert_close(prior.embedding.weight[:, codebook_width:], before[:, codebook_width:])


def test_codebook_init_rejects_codebooks_that_do_not_fit():
    bottom = make_prior(bottom_config())
    with pytest.raises(ValueError, match=r"codebook: expected shape \(8, D\)"):
        bottom.init_code_embeddings(torch.randn(7, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="needs the top codebook too"):
        bottom.init_code_embeddings(torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"condition_codebook: expected shape \(6, D\)"):
        bottom.init_code_embeddings(torch.randn(8, 4), torch.randn(8, 4))
    with pytest.raises(ValueError, match="all its vectors are equal"):
        bottom.init_code_embeddings(torch.ones(8, 4), torch.randn(6, 4))
    with pytest.raises(ValueError, match="unconditional"):
        make_prior(top_config()).init_code_embeddings(torch.randn(8, 4), torch.randn(6, 4))


@pytest.mark.parametrize("condition_norm", [False, True])
def test_a_normalised_condition_stack_tells_top_grids_apart_when_its_stream_runs_far_below_zero(condition_norm):
    """What training did to the demo's bottom prior at seed 0: its conditioning stack's residual stream ended
    near -55, where every ELU gives -1, so the stack's output was one constant for every top grid. The same
    state made by hand: unnormalised, two top grids give the same output; normalised, they do not."""
    prior = make_prior(bottom_config(condition_norm=condition_norm))
    with torch.no_grad():
        for block in prior.condition_stack.blocks:
            block.body[-1].bias.fill_(-50.0)
        grids = torch.randint(0, 6, (2, *prior.config.condition_shape), generator=torch.Generator().manual_seed(0))
        out = prior.condition_stack(prior.embed_condition(grids))  # (2, C, T, H, W)
    assert ((out[0] - out[1]).abs().max() > 0.1) == condition_norm


def test_a_bottom_prior_learns_what_the_top_codes_say():
    """Each bottom code repeats the top code above it, so the first code of each 2×2×2 block can be known from
    the top codes alone (2.6 bits when guessed among 6): trained, the prior must read it off its own clip's top
    codes, and not off another clip's."""
    config = bottom_config(channels=32, embed_dim=16, condition_channels=16, condition_norm=True)
    prior = make_prior(config)

    def batch(size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        top = torch.randint(0, 6, (size, *config.condition_shape), generator=generator)
        return top.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3), top

    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    prior.train()
    for _ in range(60):
        codes, top = batch(16)
        loss = F.cross_entropy(prior(codes, top), codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    codes, top = batch(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        first = lambda condition: (F.cross_entropy(prior(codes, condition), codes, reduction="none")
                                   [:, ::2, ::2, ::2].mean().item() / math.log(2))
        own, other = first(top), first(top.roll(1, 0))
    assert own < 0.5 and other > 2.0, f"{own:.2f} bits given the clip's top codes, {other:.2f} given another's"
