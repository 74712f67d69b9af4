import dataclasses

import pytest
import torch

from vqvid.models.vqvae import VQVAE, VQVAEConfig, level_dropout_mask, top_change

HIERARCHIES = ["conditioned", "independent"]


def _small(hierarchy: str = "conditioned", **overrides) -> VQVAEConfig:
    """Narrow enough to run a 16×256×256 clip in about a second."""
    fields = dict(channels=8, res_channels=4, n_res_blocks=1, embed_dim=4, num_codes=16, hierarchy=hierarchy)
    return VQVAEConfig(**{**fields, **overrides})


def _model(hierarchy: str = "conditioned", seed: int = 0, **overrides) -> VQVAE:
    torch.manual_seed(seed)
    return VQVAE(_small(hierarchy, **overrides))


def _video(b: int, t: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, t, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("hierarchy", HIERARCHIES)
def test_thesis_clip_gives_4x32x32_top_and_8x64x64_bottom_codes(hierarchy):
    model = _model(hierarchy).eval()
    with torch.no_grad():
        out = model(_video(1, 16, 256, 256))
    assert out.top.codes.shape == (1, 4, 32, 32)
    assert out.bottom.codes.shape == (1, 8, 64, 64)
    assert out.top.codes.dtype == out.bottom.codes.dtype == torch.int64
    assert out.reconstruction.shape == (1, 3, 16, 256, 256)
    assert VQVAE.grid_shapes(16, 256, 256) == ((4, 32, 32), (8, 64, 64))


@pytest.mark.parametrize("hierarchy, activation", [*((h, "silu") for h in HIERARCHIES), ("conditioned", "relu")])
def test_tiny_clip_shapes_and_losses(hierarchy, activation):
    model = _model(hierarchy, activation=activation).train()
    latents = {}  # what each quantiser was given
    for name in ("top", "bottom"):
        quantizer = getattr(model, f"{name}_quantizer")
        quantizer.register_forward_hook(lambda module, inputs, output, name=name: latents.update({name: inputs[0]}))
    out = model(_video(2, 16, 64, 64))
    assert out.top.codes.shape == (2, 4, 8, 8)
    assert out.bottom.codes.shape == (2, 8, 16, 16)
    assert out.top.quantized.shape == (2, 4, 4, 8, 8)
    assert out.bottom.quantized.shape == (2, 4, 8, 16, 16)
    assert out.reconstruction.shape == (2, 3, 16, 64, 64)
    # Eq. 3's third term at each level, beta * |z_e - sg(e)|², summed: by hand from the latents and the codes'
    # vectors as they were quantised (the codebooks have moved since, in training mode).
    by_hand = sum(model.config.beta * (latents[name] - level.quantized).pow(2).mean()
                  for name, level in (("top", out.top), ("bottom", out.bottom)))
    torch.testing.assert_close(out.commitment_loss, by_hand)
    assert out.commitment_loss > 0
    assert model.grid_shapes(16, 64, 64) == ((4, 8, 8), (8, 16, 16))


@pytest.mark.parametrize("hierarchy", HIERARCHIES)
def test_gradients_reach_both_encoders_through_the_quantisers(hierarchy):
    model = _model(hierarchy).train()
    out = model(_video(1, 8, 32, 32))
    out.reconstruction.pow(2).mean().backward()
    for name in ("bottom_encoder", "top_encoder"):
        first_conv = getattr(model, name)[0]
        assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0, name


@pytest.mark.parametrize("hierarchy", HIERARCHIES)
def test_encode_and_encode_top_then_decode_codes_equal_forward_in_eval_mode(hierarchy):
    model = _model(hierarchy).eval()
    video = _video(2, 8, 32, 32)
    with torch.no_grad():
        out = model(video)
        codes = model.encode(video)
        top = model.encode_top(video)
        decoded = model.decode_codes(codes.top, codes.bottom)
    assert torch.equal(codes.top, out.top.codes)
    assert torch.equal(top, out.top.codes)  # the top codes alone, as the context reader's targets
    assert torch.equal(codes.bottom, out.bottom.codes)
    assert torch.allclose(decoded, out.reconstruction, rtol=0, atol=1e-6)


def test_encoding_does_not_update_codebooks_even_in_training_mode():
    model = _model().train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    model.encode(_video(1, 8, 32, 32))
    model.encode_top(_video(1, 8, 32, 32))
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_decoding_one_level_uses_zeros_for_the_other():
    model = _model().eval()
    with torch.no_grad():
        codes = model.encode(_video(2, 8, 32, 32))
        full = model.decode_codes(codes.top, codes.bottom)
        top_only = model.decode_codes(codes.top, None)
        bottom_only = model.decode_codes(None, codes.bottom)
        assert top_only.shape == bottom_only.shape == full.shape == (2, 3, 8, 32, 32)
        assert not torch.allclose(top_only, full, atol=1e-3)
        assert not torch.allclose(bottom_only, full, atol=1e-3)
        # A zeroed codebook gives zero vectors for every code: the same as leaving that level out.
        model.bottom_quantizer.embed.zero_()
        assert torch.allclose(model.decode_codes(codes.top, codes.bottom), top_only, atol=1e-6)
        model.top_quantizer.embed.zero_()
        assert torch.allclose(model.decode_codes(None, codes.bottom), model.decode_codes(codes.top, None),
                              atol=1e-6)


def test_decode_codes_rejects_mismatched_levels():
    model = _model().eval()
    with pytest.raises(ValueError, match="neither"):
        model.decode_codes(None, None)
    with pytest.raises(ValueError, match=r"\(2, 4, 8, 8\)"):
        top, bottom = torch.zeros(2, 2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 8, 6, dtype=torch.long)
        model.decode_codes(top, bottom)
    with pytest.raises(ValueError, match="even"):
        model.decode_codes(None, torch.zeros(2, 4, 8, 5, dtype=torch.long))


@pytest.mark.parametrize(
    "shape",
    [(3, 16, 64, 64), (1, 1, 16, 64, 64), (1, 3, 6, 64, 64), (1, 3, 16, 60, 64), (1, 3, 16, 64, 36)],
)
def test_bad_video_shapes_say_what_is_allowed(shape):
    model = _model()
    with pytest.raises(ValueError, match=r"multiple of 4.*multiples of 8.*got") as error:
        model(torch.zeros(shape))
    got = "×".join(map(str, shape[2:])) if len(shape) == 5 and shape[1] == 3 else str(shape)
    assert got in str(error.value)
    with pytest.raises(ValueError, match="multiple of 4"):
        model.encode(torch.zeros(shape))


def test_integer_video_is_refused_with_the_range_it_should_have():
    model = _model()
    with pytest.raises(ValueError, match=r"floating point in \[-1, 1\], got torch.uint8"):
        model.encode(torch.zeros(1, 3, 16, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("hierarchy, bottom_changes", [("independent", False), ("conditioned", True)])
def test_only_the_conditioned_bottom_depends_on_the_top_pathway(hierarchy, bottom_changes):
    model = _model(hierarchy).eval()
    video = _video(2, 8, 32, 32)
    before = model.encode(video)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.startswith("top_"):
                tensor.add_(torch.randn(tensor.shape, generator=generator))
    after = model.encode(video)
    assert not torch.equal(before.top, after.top)  # the perturbation reached the top codes
    assert torch.equal(before.bottom, after.bottom) == (not bottom_changes)


def _moving_squares(n: int, frames: int, size: int) -> torch.Tensor:
    """n clips (n, 3, frames, size, size) in [-1, 1]: a coloured square moving right over a dark ground."""
    generator = torch.Generator().manual_seed(3)
    clips = torch.full((n, 3, frames, size, size), -0.8)
    for i in range(n):
        color = torch.rand(3, generator=generator) * 1.6 - 0.6
        y, x = torch.randint(0, size - 6, (2,), generator=generator).tolist()
        for t in range(frames):
            left = (x + t) % (size - 6)
            clips[i, :, t, y:y + 6, left:left + 6] = color[:, None, None]
    return clips


def test_a_few_hundred_adam_steps_learn_the_moving_squares(one_thread):
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(channels=16, res_channels=8, n_res_blocks=1, embed_dim=8, num_codes=32)).train()
    clips = _moving_squares(8, frames=4, size=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def mse() -> float:
        with torch.no_grad():
            return (model.eval()(clips).reconstruction - clips).pow(2).mean().item()

    initial = mse()
    for _ in range(200):
        out = model.train()(clips)
        loss = (out.reconstruction - clips).pow(2).mean() + out.commitment_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    final = mse()
    assert final < 0.2 * initial
    # Half the error of drawing the background alone: the squares themselves have been learnt.
    background_only = (clips + 0.8).pow(2).mean().item()
    assert final < 0.5 * background_only


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="model.channels"):
        VQVAEConfig(channels=7)
    with pytest.raises(ValueError, match="model.hierarchy"):
        VQVAEConfig(hierarchy="parallel")
    with pytest.raises(ValueError, match="model.activation"):
        VQVAEConfig(activation="gelu")
    with pytest.raises(ValueError, match="model.decay"):
        VQVAEConfig(decay=1.5)
    with pytest.raises(ValueError, match="model.num_codes"):
        dataclasses.replace(VQVAEConfig(), num_codes=1)


@pytest.mark.parametrize("hierarchy", HIERARCHIES)
def test_level_dropout_decodes_dropped_clips_from_the_top_alone_in_training_only(hierarchy):
    model = _model(hierarchy, level_dropout=0.5, restart_threshold=0.0).train()
    video = _video(8, 8, 32, 32)
    torch.manual_seed(5)
    out = model(video)
    with torch.no_grad():
        full = model._decode(out.top.quantized, out.bottom.quantized)
        top_only = model._decode(out.top.quantized, torch.zeros_like(out.bottom.quantized))
    dropped = [torch.allclose(out.reconstruction[i], top_only[i], atol=1e-5) for i in range(8)]
    kept = [torch.allclose(out.reconstruction[i], full[i], atol=1e-5) for i in range(8)]
    assert all(d != k for d, k in zip(dropped, kept, strict=True))  # each clip is one or the other
    assert out.bottom_kept.tolist() == [float(k) for k in kept]  # the output says which
    assert any(dropped) and any(kept)  # with this seed, 0.5 drops some clips of eight and keeps others
    model.eval()
    with torch.no_grad():
        out = model(video)
        assert torch.allclose(out.reconstruction, model.decode_codes(out.top.codes, out.bottom.codes), atol=1e-5)


@pytest.mark.parametrize(("batch", "rate"), [(6, 0.2), (8, 0.5), (4, 0.25), (3, 0.9), (5, 0.05)])
def test_level_dropout_drops_each_clip_at_the_rate_and_nearly_the_same_number_every_step(batch, rate):
    torch.manual_seed(0)
    masks = torch.stack([level_dropout_mask(batch, rate) for _ in range(4000)])  # (draws, batch)
    dropped = (1 - masks).sum(1)
    low = int(rate * batch)
    assert set(dropped.tolist()) <= {low, low + 1}  # never fewer than floor(rate * batch), never more than one over
    per_clip = (1 - masks).mean(0)  # each clip's share of draws in which it was dropped
    assert torch.allclose(per_clip, torch.full((batch,), rate), atol=0.03), per_clip
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_level_dropout_must_be_a_probability_below_one():
    for value in (-0.1, 1.0):
        with pytest.raises(ValueError, match="model.level_dropout"):
            _small(level_dropout=value)
    for value in (0.0, 1.5):
        with pytest.raises(ValueError, match="model.top_only_weight"):
            _small(top_only_weight=value)


DESIGNS = [("3d", 3), ("3d", 1), ("spatial", 1), ("factorised", 1), ("factorised", 3)]


@pytest.mark.parametrize(("block", "resample_frames"), DESIGNS)
def test_every_block_design_gives_the_same_code_grids_and_round_trips(block, resample_frames):
    model = _model(block=block, resample_frames=resample_frames).eval()
    video = _video(2, 8, 32, 32)
    with torch.no_grad():
        out = model(video)
        codes = model.encode(video)
        decoded = model.decode_codes(codes.top, codes.bottom)
    assert out.reconstruction.shape == video.shape
    assert codes.top.shape == (2, 2, 4, 4) and codes.bottom.shape == (2, 4, 8, 8)
    assert torch.equal(codes.top, out.top.codes) and torch.equal(codes.bottom, out.bottom.codes)
    assert torch.allclose(decoded, out.reconstruction, atol=1e-5)


def test_the_default_design_is_the_one_models_were_made_with_before_it_could_be_chosen():
    """Configs saved before `block` and `resample_frames` existed lack them: the defaults must build the model
    those configs were trained as, 3×3×3 residual convolutions and 3×4×4 space-only resampling."""
    shapes = {name: tuple(p.shape) for name, p in VQVAE(_small()).state_dict().items()}
    c, hidden = 8, 4
    assert shapes["bottom_encoder.2.weight"] == (c, c // 2, 3, 4, 4)
    assert shapes["decoder.3.weight"] == (c, c // 2, 3, 4, 4)
    assert shapes["bottom_encoder.5.block.1.weight"] == (hidden, c, 3, 3, 3)
    assert shapes["bottom_encoder.5.block.3.weight"] == (c, hidden, 1, 1, 1)
    assert len(shapes) == len(VQVAE(_small(block="3d", resample_frames=3)).state_dict())


@pytest.mark.parametrize(("block", "kernels"), [("3d", [(3, 3, 3)]), ("spatial", [(1, 3, 3)]),
                                                ("factorised", [(1, 3, 3), (3, 1, 1)])])
def test_residual_blocks_convolve_with_the_chosen_kernels_and_see_frames_accordingly(block, kernels):
    from vqvid.models.vqvae import ResBlock3d

    torch.manual_seed(0)
    res = ResBlock3d(8, 4, block=block)
    convs = [m for m in res.block if isinstance(m, torch.nn.Conv3d)]
    assert [tuple(m.kernel_size) for m in convs[:-1]] == kernels
    x = _video(1, 5, 6, 6)[:, :1].repeat(1, 8, 1, 1, 1)  # (1, 8, 5, 6, 6)
    changed = x.clone()
    changed[:, :, 3] += 1.0  # one frame only
    with torch.no_grad():
        diff = (res(changed) - res(x)).abs().amax(dim=(0, 1, 3, 4))  # (T,) change per output frame
    assert diff[3] > 0
    sees_neighbours = bool(diff[2] > 0 and diff[4] > 0)
    assert sees_neighbours == (block != "spatial")  # only 1×3×3 blocks keep frames apart
    assert diff[0] == 0 and diff[1] == 0  # 3 frames at most


@pytest.mark.parametrize("resample_frames", [1, 3])
def test_resample_frames_sets_the_time_extent_of_the_space_only_resampling(resample_frames):
    model = VQVAE(_small(resample_frames=resample_frames))
    assert tuple(model.bottom_encoder[2].kernel_size) == (resample_frames, 4, 4)
    assert tuple(model.decoder[3].kernel_size) == (resample_frames, 4, 4)


def test_config_rejects_unknown_block_designs():
    with pytest.raises(ValueError, match="model.block must be one of"):
        _small(block="2d")
    with pytest.raises(ValueError, match="model.resample_frames must be 1 or 3"):
        _small(resample_frames=2)


def test_the_design_is_chosen_by_overrides_and_bad_choices_name_the_field():
    from vqvid.config import ConfigError, resolve
    from vqvid.presets import VQVAERun, get_preset

    run = resolve(VQVAERun, get_preset("tiny").vqvae, None, ["model.block=factorised", "model.resample_frames=1"])
    assert (run.model.block, run.model.resample_frames) == ("factorised", 1)
    with pytest.raises(ConfigError, match=r"model\.block: expected one of \['3d', 'spatial', 'factorised'\]"):
        resolve(VQVAERun, get_preset("tiny").vqvae, None, ["model.block=2d"])
    with pytest.raises(ConfigError, match="model.resample_frames must be 1 or 3"):
        resolve(VQVAERun, get_preset("tiny").vqvae, None, ["model.resample_frames=2"])


def test_top_change_is_zero_for_a_still_latent_about_two_for_unrelated_frames_and_blind_to_scale():
    torch.manual_seed(0)
    frame = torch.randn(4, 8, 1, 6, 6)
    assert top_change(frame.expand(4, 8, 5, 6, 6)).item() == 0.0  # nothing changes over time
    unrelated = torch.randn(16, 8, 6, 16, 16)
    assert 1.9 < top_change(unrelated).item() < 2.1  # E(a - b)² = 2 var for independent frames
    drifting = frame + 0.1 * torch.arange(5.0).view(1, 1, 5, 1, 1)
    assert torch.allclose(top_change(drifting * 7 - 3), top_change(drifting), rtol=1e-4)
    assert top_change(frame).item() == 0.0  # a single frame has no change to measure


def test_top_slowness_adds_the_weighted_top_change_to_the_training_loss_and_reaches_only_the_encoders():
    from vqvid.training.config import TrainConfig
    from vqvid.training.vqvae import VQVAEModule

    video = _video(2, 8, 32, 32)
    losses = {}
    for weight in (0.0, 0.5):
        torch.manual_seed(3)
        module = VQVAEModule.from_configs(_small(level_dropout=0.0, top_slowness=weight), TrainConfig())
        module.train()
        out, _, losses[weight] = module._step(video)
    assert out.top_change > 0
    assert torch.allclose(losses[0.5] - losses[0.0], 0.5 * out.top_change, atol=1e-6)
    model = _model().train()
    model(_video(2, 8, 32, 32)).top_change.backward()
    grads = {name: p.grad is not None and p.grad.abs().sum().item() > 0 for name, p in model.named_parameters()}
    assert grads["top_pre_quantize.weight"] and grads["bottom_encoder.0.weight"]
    assert not any(grads[name] for name in grads if name.startswith(("decoder.", "bottom_pre_quantize.")))


def test_top_slowness_must_not_be_negative():
    with pytest.raises(ValueError, match="model.top_slowness"):
        _small(top_slowness=-0.1)
    assert VQVAEConfig().top_slowness == 0.0  # off unless asked for: the loss stays VQ-VAE-2's


def _latents(model: VQVAE, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs of both quantisers, top (B, D, T/4, ...) and bottom (B, D, T/2, ...), with the top latent
    itself standing in for its quantised vectors, so that gradients pass."""
    features = model.bottom_encoder(video)
    top = model.top_pre_quantize(model.top_encoder(features))
    return top, model._bottom_latent(features, top)


def _frames_seen(latent: torch.Tensor, video: torch.Tensor, frame: int) -> list[int]:
    """The input frames whose pixels change latent frame `frame` (by the gradient of its sum)."""
    (grad,) = torch.autograd.grad(latent[:, :, frame].sum(), video, retain_graph=True)
    return grad.abs().sum(dim=(0, 1, 3, 4)).nonzero().flatten().tolist()


@pytest.mark.parametrize("hierarchy", HIERARCHIES)
@pytest.mark.parametrize(("block", "resample_frames"), DESIGNS)
def test_a_causal_encoder_codes_each_latent_frame_from_its_own_and_earlier_frames_only(hierarchy, block,
                                                                                      resample_frames):
    """Causality by gradients: top latent frame k stands for frames 4k..4k+3 and must not see frame 4k+4 or
    later; bottom latent frame j stands for frames 2j, 2j+1, and conditioned on the top it sees the frames of
    its top latent frame, up to 4(j // 2) + 3. The centred encoder, for contrast, sees past those ends."""
    video = _video(1, 16, 16, 16).requires_grad_()
    for causal in (True, False):
        top, bottom = _latents(_model(hierarchy, block=block, resample_frames=resample_frames,
                                      causal_encoder=causal), video)
        last_top = [max(_frames_seen(top, video, k)) for k in range(4)]
        last_bottom = [max(_frames_seen(bottom, video, j)) for j in range(8)]
        if causal:
            assert last_top == [3, 7, 11, 15]
            ends = [4 * (j // 2) + 3 if hierarchy == "conditioned" else 2 * j + 1 for j in range(8)]
            assert last_bottom == ends
            assert min(_frames_seen(top, video, 3)) < 12  # and it does see earlier latent frames
        else:
            assert last_top[0] > 3 and last_bottom[1] > 3


def test_a_causal_encoder_gives_the_context_the_codes_of_the_whole_clip():
    """What prediction relies on: the codes of the first C frames, encoded padded (`encode_context`), are
    those of the whole clip, so the priors see in prediction the context codes they were trained on."""
    from vqvid.sampling.predict import encode_context, padding_cost

    video = _video(2, 16, 32, 32)
    for causal in (True, False):
        model = _model(causal_encoder=causal).eval()
        with torch.no_grad():
            whole = _latents(model, video)
            alone = _latents(model, torch.cat([video[:, :, :8], video[:, :, 7:8].expand(-1, -1, 8, -1, -1)], 2))
        top_same = torch.allclose(whole[0][:, :, :2], alone[0][:, :, :2], atol=1e-6)
        bottom_same = torch.allclose(whole[1][:, :, :4], alone[1][:, :, :4], atol=1e-6)
        assert top_same == bottom_same == causal
    cost = padding_cost(model := _model(causal_encoder=True).eval(), video, 8)
    assert abs(cost.padded_psnr - cost.whole_clip_psnr) < 1e-3
    codes = encode_context(model, video[:, :, :8], 16)
    assert codes.top.shape == (2, 2, 4, 4) and codes.bottom.shape == (2, 4, 8, 8)


def test_a_causal_convolution_keeps_the_shapes_and_parameter_names_of_a_conv3d():
    from vqvid.models.vqvae import TimeCausalConv3d

    centred = VQVAE(_small())
    causal = VQVAE(_small(causal_encoder=True))
    shapes = lambda model: {name: tuple(p.shape) for name, p in model.state_dict().items()}
    differ = {name for name in shapes(centred) if shapes(centred)[name] != shapes(causal)[name]}
    assert differ == {"top_decoder.3.weight"}  # its transposed convolution doubles time with a kernel of 2
    assert isinstance(causal.bottom_encoder[0], TimeCausalConv3d) and not isinstance(centred.bottom_encoder[0],
                                                                                  TimeCausalConv3d)
    with pytest.raises(ValueError, match="time kernel of at least its stride"):
        TimeCausalConv3d(4, 4, (1, 3, 3), stride=(2, 1, 1))
