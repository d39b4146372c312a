"""Importing transformers checkpoints: tiny random ViT / ViT-MAE / VideoMAE / AST models are saved with
`save_pretrained`, imported, and avssl's encoder must compute the same token features.

Where a transformers model has a CLS (and distillation) token, the reference runs its own patch
embedding, position table and layers on the patch tokens alone (the CLS token takes part in its
attention; avssl encoders have none), which is exactly what the import claims to reproduce.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from avssl.models.convert_hf import (load_transformers_weights, read_transformers,  # noqa: E402
                                     transformers_model_config, videomae_positions)
from avssl.cli import main  # noqa: E402
from avssl.models.factory import create_model, load_model  # noqa: E402

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
ATOL = 1e-5


def _layers(hf):
    """Encoder layers of a transformers model (attribute name differs across major versions)."""
    return hf.layers if hasattr(hf, "layers") else hf.encoder.layer


def _patch_reference(hf, pixels_or_audio, extra_tokens: int, final_norm: bool = True):
    """The transformers encoder on patch tokens only: its patch embedding + patch-grid positions,
    its layers, its final layernorm."""
    with torch.no_grad():
        x = hf.embeddings.patch_embeddings(pixels_or_audio) + hf.embeddings.position_embeddings[:, extra_tokens:]
        for layer in _layers(hf):
            x = layer(x)
        return hf.layernorm(x) if final_norm else x


def _model_for(folder, joint_depth=1, **overrides):
    cfg = transformers_model_config(folder, joint_depth=joint_depth)
    return create_model(dataclasses.replace(cfg, **overrides)).eval()


def _video_tokens(model, video):
    with torch.no_grad():
        return model.video_encoder.forward_tokens(video, joint_blocks=model.joint_blocks)


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.ViTModel(transformers.ViTConfig(image_size=32, patch_size=16, **SMALL),
                               add_pooling_layer=False).eval()
    folder = tmp_path_factory.mktemp("vit")
    hf.save_pretrained(folder)
    return hf, folder


def test_vit_single_frame_matches(vit_folder):
    hf, folder = vit_folder
    model = _model_for(folder, num_frames=1, tubelet=(1, 16, 16))
    report = load_transformers_weights(model, folder)
    image = torch.randn(2, 3, 32, 32)
    ours = _video_tokens(model, image[:, None])
    assert ours.shape == (2, 4, 32)
    torch.testing.assert_close(ours, _patch_reference(hf, image, 1), atol=ATOL, rtol=0)
    assert any("cls_token dropped" in n for n in report.notes)
    assert "embeddings.cls_token" not in report.unused
    assert not any(k.startswith("audio_encoder.blocks") for k in report.loaded)
    assert "audio_encoder.blocks.0.attn.qkv.weight" in report.missing


def test_vit_inflated_tubelets_match_on_a_static_clip(vit_folder):
    """Kernel repeated over 2 frames / 2 and positions shared over time: each time slice of a clip of
    one repeated image gives the image's tokens (attention over duplicated keys is unchanged)."""
    hf, folder = vit_folder
    model = _model_for(folder, num_frames=4, tubelet=(2, 16, 16))
    report = load_transformers_weights(model, folder)
    image = torch.randn(1, 3, 32, 32)
    ours = _video_tokens(model, image[:, None].expand(1, 4, 3, 32, 32))
    reference = _patch_reference(hf, image, 1)
    torch.testing.assert_close(ours[:, :4], reference, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours[:, 4:], reference, atol=ATOL, rtol=0)
    assert any("inflated over 2 frames" in n for n in report.notes)


def test_vit_positions_resampled_and_sincos_noted(vit_folder):
    _, folder = vit_folder
    bigger = _model_for(folder, num_frames=2, tubelet=(2, 16, 16), frame_size=48)
    report = load_transformers_weights(bigger, folder)
    assert any("resampled from 2x2 to 3x3" in n for n in report.notes)
    assert torch.isfinite(_video_tokens(bigger, torch.randn(1, 2, 3, 48, 48))).all()
    fixed = _model_for(folder, num_frames=1, tubelet=(1, 16, 16), pos_embed="sincos", norm_eps=1e-6)
    report = load_transformers_weights(fixed, folder)
    assert any("positions not imported" in n for n in report.notes)
    assert any("eps 1e-12 in the source, 1e-06" in n for n in report.notes)


def test_vit_mae_pretraining_checkpoint_into_both_streams(tmp_path):
    torch.manual_seed(1)
    config = transformers.ViTMAEConfig(image_size=32, patch_size=16, decoder_hidden_size=16,
                                       decoder_num_hidden_layers=1, decoder_intermediate_size=32,
                                       decoder_num_attention_heads=2, **SMALL)
    hf = transformers.ViTMAEForPreTraining(config).eval()
    hf.save_pretrained(tmp_path)
    model = _model_for(tmp_path, num_frames=1, tubelet=(1, 16, 16), num_mel_bins=32, audio_frames=32)
    report = load_transformers_weights(model, tmp_path, target="both")
    image = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(_video_tokens(model, image[:, None]), _patch_reference(hf.vit, image, 1),
                               atol=ATOL, rtol=0)
    kernel = hf.vit.embeddings.patch_embeddings.projection.weight
    torch.testing.assert_close(model.audio_encoder.patch_embed.proj.weight, kernel.sum(1, keepdim=True))
    fc1 = model.audio_encoder.blocks[0].mlp.fc1.weight
    torch.testing.assert_close(fc1, model.video_encoder.blocks[0].mlp.fc1.weight)
    last = _layers(hf.vit)[1]
    for norm in ("norm1", "norm1_a", "norm1_v"):
        torch.testing.assert_close(getattr(model.joint_blocks[0], norm).weight, last.layernorm_before.weight)
    torch.testing.assert_close(model.joint_norm.weight, hf.vit.layernorm.weight)
    assert any(k.startswith("decoder.") for k in report.unused)  # the MAE decoder has no avssl counterpart
    assert not any(k.startswith(("audio_encoder", "video_encoder", "joint")) for k in report.missing)


@pytest.mark.parametrize("mean_pooling", [False, True])
def test_videomae_matches_last_hidden_state(tmp_path, mean_pooling):
    torch.manual_seed(2)
    config = transformers.VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2,
                                         use_mean_pooling=mean_pooling, **SMALL)
    hf = transformers.VideoMAEModel(config).eval()
    hf.save_pretrained(tmp_path)
    model = _model_for(tmp_path, joint_depth=0)
    assert model.config.tubelet == (2, 16, 16) and model.config.num_frames == 4
    report = load_transformers_weights(model, tmp_path)
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        reference = hf(video).last_hidden_state
        ours = (model.video_encoder.forward_blocks(video) if mean_pooling  # no final norm in the source
                else _video_tokens(model, video))
    assert ours.shape == reference.shape == (2, 8, 32)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)
    qkv_bias = model.video_encoder.blocks[0].attn.qkv.bias
    assert torch.equal(qkv_bias[32:64], torch.zeros(32))  # VideoMAE has no key bias
    assert ("video_encoder.norm.weight" in report.missing) == mean_pooling


def test_videomae_position_table_is_transformers_table():
    from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

    torch.testing.assert_close(videomae_positions(20, 12), get_sinusoid_encoding_table(20, 12)[0])


def _ast(tmp_path, stride):
    torch.manual_seed(3)
    config = transformers.ASTConfig(patch_size=16, frequency_stride=stride, time_stride=stride, max_length=64,
                                    num_mel_bins=32, **SMALL)
    hf = transformers.ASTModel(config).eval()
    with torch.no_grad():  # AST initialises positions and tokens to zero; make them matter
        for param in (hf.embeddings.position_embeddings, hf.embeddings.cls_token, hf.embeddings.distillation_token):
            param.normal_()
    hf.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True, "mean": -4.27, "std": 4.57}))
    return hf


def test_ast_matches_without_cls_and_distillation_tokens(tmp_path):
    hf = _ast(tmp_path, stride=16)
    model = _model_for(tmp_path)
    assert (model.config.num_mel_bins, model.config.audio_frames) == (32, 64)
    assert model.config.fbank_mean == -4.27 and model.config.fbank_std == pytest.approx(9.14)
    report = load_transformers_weights(model, tmp_path)
    audio = torch.randn(2, 64, 32)  # (batch, time frames, mel bins), the input layout of both
    with torch.no_grad():
        ours = model.audio_encoder.forward_tokens(audio, joint_blocks=model.joint_blocks)
    torch.testing.assert_close(ours, _patch_reference(hf, audio, 2), atol=ATOL, rtol=0)
    assert any("cls_token and distillation_token dropped" in n for n in report.notes)
    assert not any(k.startswith("video_encoder.blocks") for k in report.loaded)


def test_ast_overlapping_patches_are_resampled(tmp_path):
    _ast(tmp_path, stride=10)
    model = _model_for(tmp_path)
    report = load_transformers_weights(model, tmp_path)
    assert any("overlap" in n for n in report.notes)
    assert any("resampled from a 2x5 grid to 2x4" in n for n in report.notes)
    with torch.no_grad():
        assert torch.isfinite(model.embed_audio(torch.randn(1, 64, 32))).all()


def test_mismatches_are_clear_errors(vit_folder, tmp_path):
    _, folder = vit_folder
    wide = create_model("tiny", embed_dim=64, pos_embed="learned")
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    with pytest.raises(ValueError, match="hidden_size 32 vs embed_dim 64"):
        load_transformers_weights(wide, folder)
    assert all(torch.equal(before[k], v) for k, v in wide.state_dict().items())
    deep = _model_for(folder, joint_depth=1, depth=2)
    with pytest.raises(ValueError, match="2 layers vs depth 2 \\+ joint_depth 1"):
        load_transformers_weights(deep, folder)
    with pytest.raises(ValueError, match="patch size"):
        load_transformers_weights(_model_for(folder, tubelet=(2, 8, 8)), folder)
    with pytest.raises(ValueError, match="into target video, not 'audio'"):
        load_transformers_weights(_model_for(folder), read_transformers(folder, "videomae"), target="audio")
    with pytest.raises(FileNotFoundError, match="Hub id"):
        read_transformers("MCG-NJU/videomae-base-does-not-exist")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        read_transformers(tmp_path)


def test_cli_videomae_then_ast_into_one_model(tmp_path, capsys):
    torch.manual_seed(5)
    transformers.VideoMAEModel(transformers.VideoMAEConfig(
        image_size=32, patch_size=16, num_frames=4, use_mean_pooling=False, **SMALL)).save_pretrained(tmp_path / "vm")
    ast = transformers.ASTModel(transformers.ASTConfig(max_length=64, num_mel_bins=32, frequency_stride=16,
                                                       time_stride=16, **SMALL))
    ast.save_pretrained(tmp_path / "ast")
    assert main(["import-weights", str(tmp_path / "vm"), str(tmp_path / "video"), "num_mel_bins=32",
                 "audio_frames=64", "--base", "tiny"]) == 0
    assert main(["import-weights", "--init", str(tmp_path / "video"), str(tmp_path / "ast"), str(tmp_path / "av")]) == 0
    video_only, both = load_model(tmp_path / "video"), load_model(tmp_path / "av")
    assert both.config.name == "tiny-videomae" and both.config.depth == 1 and both.config.joint_depth == 1
    torch.testing.assert_close(both.video_encoder.blocks[0].attn.qkv.weight,
                               video_only.video_encoder.blocks[0].attn.qkv.weight)
    torch.testing.assert_close(both.audio_encoder.patch_embed.proj.weight,
                               ast.embeddings.patch_embeddings.projection.weight)
    output = capsys.readouterr().out
    assert "imported" in output and "for the video stream too" in output
