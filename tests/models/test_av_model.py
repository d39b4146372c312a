import pytest
import torch

from avssl.models import layers
from avssl.models.factory import create_model


def _batch(batch=4, frames=8, size=64, audio_frames=208, seed=0):
    gen = torch.Generator().manual_seed(seed)
    video = torch.randn(batch, frames, 3, size, size, generator=gen)
    audio = torch.randn(batch, audio_frames, 128, generator=gen)
    return video, audio


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("tiny")


def test_forward_returns_losses_and_normalised_embeddings(model):
    video, audio = _batch()
    out = model(video, audio, torch.tensor([True, True, False, True]))
    assert {"loss", "loss_mae_video", "loss_mae_audio", "loss_contrastive", "video_emb", "audio_emb"} <= set(out)
    for key in ("loss", "loss_mae_video", "loss_mae_audio", "loss_contrastive"):
        assert out[key].ndim == 0 and torch.isfinite(out[key])
    expected = out["loss_mae_video"] + out["loss_mae_audio"] + 0.1 * out["loss_contrastive"]
    torch.testing.assert_close(out["loss"], expected)
    for key in ("video_emb", "audio_emb"):
        assert out[key].shape == (4, 64)
        torch.testing.assert_close(out[key].norm(dim=-1), torch.ones(4))


def test_rows_without_audio_do_not_affect_audio_terms(model):
    video, audio = _batch()
    has_audio = torch.tensor([True, False, True, True])
    first = model(video, audio, has_audio, generator=torch.Generator().manual_seed(5))
    audio[1] = torch.randn_like(audio[1]) * 10
    second = model(video, audio, has_audio, generator=torch.Generator().manual_seed(5))
    for key in ("loss_mae_audio", "loss_contrastive", "loss"):
        torch.testing.assert_close(first[key], second[key])
    third = model(video, audio, None, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(third["loss_mae_audio"], second["loss_mae_audio"])


def test_all_sound_masks_attention_as_none_does_and_none_keeps_sdpa_unmasked(model, monkeypatch):
    """has_audio always gives a mask (no host sync to ask whether it is needed); all-True attends as None."""
    video, audio = _batch(batch=2)
    masks = []
    sdpa = layers.F.scaled_dot_product_attention

    def recording(q, k, v, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", recording)
    unmasked = model(video, audio, None, generator=torch.Generator().manual_seed(5))
    assert masks and all(m is None for m in masks)  # the fast path: SDPA never sees a mask
    masks.clear()
    all_sound = model(video, audio, torch.tensor([True, True]), generator=torch.Generator().manual_seed(5))
    assert any(m is not None for m in masks)
    for key in ("loss", "loss_mae_video", "loss_mae_audio", "loss_contrastive"):
        torch.testing.assert_close(all_sound[key], unmasked[key])


def test_other_clip_sizes_and_masking_modes():
    model = create_model("tiny", video_masking="random", audio_masking="time_freq", pos_embed="learned")
    video, audio = _batch(batch=2, frames=4, size=96, audio_frames=96)
    out = model(video, audio)
    assert torch.isfinite(out["loss"])
    assert model.embed_video(video).shape == model.embed_audio(audio).shape == (2, 64)


def test_embeddings_are_unmasked_and_deterministic(model):
    video, audio = _batch(batch=2)
    model.eval()
    torch.testing.assert_close(model.embed_video(video), model.embed_video(video))
    torch.testing.assert_close(model.embed_audio(audio).norm(dim=-1), torch.ones(2))
    features = model.forward_features(video, audio)
    assert features["video_tokens"].shape == (2, 64, 128) and features["audio_tokens"].shape == (2, 104, 128)
    assert features["joint_tokens"].shape == (2, 168, 128) and features["joint"].shape == (2, 128)
    projected = torch.nn.functional.normalize(model.video_proj(features["video"]), dim=-1)
    torch.testing.assert_close(projected, model.embed_video(video))
    assert set(model.forward_features(audio=audio)) == {"audio", "audio_tokens"}
    model.train()


def test_one_adam_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = create_model("tiny")
    video, audio = _batch(batch=4, seed=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = model(video, audio, generator=torch.Generator().manual_seed(7))["loss"]
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[1] < losses[0]


def test_grad_checkpointing_same_loss_and_gradients():
    torch.manual_seed(0)
    model = create_model("tiny")
    video, audio = _batch(batch=2)
    results = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        loss = model(video, audio, generator=torch.Generator().manual_seed(3))["loss"]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)


def test_every_parameter_is_trained(model):
    model.zero_grad()
    video, audio = _batch(batch=2)
    model(video, audio)["loss"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []


def test_features_and_embeddings_match_forward_features_and_embed(model):
    video, audio = _batch(batch=3, seed=1)
    model.eval()
    out = model.features_and_embeddings(video, audio)
    assert set(out) == {"video", "audio", "video_emb", "audio_emb"}
    torch.testing.assert_close(out["video"], model.forward_features(video=video)["video"])
    torch.testing.assert_close(out["audio"], model.forward_features(audio=audio)["audio"])
    torch.testing.assert_close(out["video_emb"], model.embed_video(video))
    torch.testing.assert_close(out["audio_emb"], model.embed_audio(audio))
    model.train()


def test_mae_weight_scales_the_reconstruction_terms():
    torch.manual_seed(0)
    model = create_model("tiny", mae_weight=0.25, contrastive_weight=2.0)
    out = model(*_batch(), generator=torch.Generator().manual_seed(1))
    expected = 0.25 * (out["loss_mae_video"] + out["loss_mae_audio"]) + 2.0 * out["loss_contrastive"]
    torch.testing.assert_close(out["loss"], expected)


def test_batch_projection_norm_spreads_identical_features_apart_only_by_their_differences():
    torch.manual_seed(0)
    model = create_model("tiny", proj_norm="batch")
    features = torch.randn(1, 128).repeat(6, 1) + 1e-3 * torch.randn(6, 128)
    with torch.no_grad():
        plain = torch.nn.functional.normalize(model.audio_proj(features), dim=-1)
        normed = model.project(features, "audio")
    # without the norm the shared component dominates (cosine ~1); standardised, the rows differ
    assert float((plain @ plain.T).min()) > 0.99
    assert float((normed @ normed.T).fill_diagonal_(0).max()) < 0.9
    assert model.audio_proj_norm.running_mean.abs().sum() > 0  # statistics kept for evaluation


def test_clip_input_norm_makes_encoders_blind_to_what_stays_still():
    torch.manual_seed(0)
    model = create_model("tiny", input_norm="clip").eval()
    video, audio = _batch(batch=2)
    still_video = torch.randn(2, 1, 3, 64, 64)  # a static background, the same in every frame
    still_audio = torch.randn(2, 1, 128)        # a stationary noise colour, the same in every frame
    with torch.no_grad():
        torch.testing.assert_close(model.embed_video(video + still_video), model.embed_video(video))
        torch.testing.assert_close(model.embed_audio(audio + still_audio), model.embed_audio(audio))
        plain = create_model("tiny").eval()
        assert not torch.allclose(plain.embed_video(video + still_video), plain.embed_video(video), atol=1e-3)


def test_time_bins_make_embeddings_depend_on_when_an_event_happens():
    torch.manual_seed(0)
    audio = torch.zeros(2, 208, 128)
    audio[0, 16:48] = 3.0    # the same burst, early in one clip ...
    audio[1, 160:192] = 3.0  # ... and late in the other
    cosine = {}
    for bins in (0, 4):
        torch.manual_seed(0)
        model = create_model("tiny", time_bins=bins, contrastive_view="full").eval()
        with torch.no_grad():
            emb = model.embed_audio(audio)
        cosine[bins] = float(emb[0] @ emb[1])
    # mean pooling of sin-cos positioned tokens barely tells the two apart (0.99); time bins do
    assert cosine[4] < cosine[0] - 0.03


def test_full_contrastive_view_scores_embeddings_of_the_whole_clip():
    torch.manual_seed(0)
    model = create_model("tiny", contrastive_view="full", time_bins=2).eval()
    video, audio = _batch(batch=3)
    out = model(video, audio, generator=torch.Generator().manual_seed(1))
    # the masked forward's embeddings would differ from the unmasked ones; these are the unmasked ones
    torch.testing.assert_close(out["video_emb"], model.embed_video(video))
    torch.testing.assert_close(out["audio_emb"], model.embed_audio(audio))
    assert model.video_proj.in_features == 3 * model.config.embed_dim


def test_time_bins_need_the_full_contrastive_view():
    with pytest.raises(ValueError, match="time_bins > 0 needs contrastive_view='full'"):
        create_model("tiny", time_bins=4)


def test_the_pretraining_model_declares_what_weight_decay_skips(model):
    exempt = model.no_weight_decay()
    assert {"video_encoder.modality_embed", "audio_encoder.modality_embed"} <= exempt
    assert not any("qkv" in name or "proj.weight" in name for name in exempt)
