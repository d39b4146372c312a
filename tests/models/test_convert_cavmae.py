"""Importing CAV-MAE checkpoints: a state dict with CAV-MAE's exact key layout (random tensors for a tiny
configuration, `module.` prefix as DataParallel saves it) is imported, and the model must compute what
CAV-MAE's own forward computes on it. The reference below is CAV-MAE's `forward_feat` and decoder
written out with plain torch ops on the state dict (timm's Attention / Mlp math, LayerNorm eps 1e-5).
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from avssl.cli import main
from avssl.masking import random_masking
from avssl.models.config import get_config
from avssl.models.convert_cavmae import cavmae_model_config, import_cavmae, read_cavmae
from avssl.models.factory import create_model, load_model

DIM, HEADS, DEPTH, DEC_DIM, DEC_HEADS, IMAGE, AUDIO_FRAMES = 32, 2, 2, 16, 2, 32, 64


def _block_keys(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    shapes = {"attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,), "attn.proj.weight": (dim, dim),
              "attn.proj.bias": (dim,), "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,),
              "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,)}
    for norm in ("norm1", "norm1_a", "norm1_v", "norm2", "norm2_a", "norm2_v"):
        shapes[f"{norm}.weight"] = shapes[f"{norm}.bias"] = (dim,)
    return {f"{prefix}.{k}": v for k, v in shapes.items()}


def cavmae_state(seed: int = 0, decoder: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors in the layout of CAV-MAE's `CAVMAE` (pretraining) model, `module.`-prefixed."""
    num_v, num_a = (IMAGE // 16) ** 2, AUDIO_FRAMES * 128 // 256
    shapes: dict[str, tuple[int, ...]] = {
        "patch_embed_a.proj.weight": (DIM, 1, 16, 16), "patch_embed_a.proj.bias": (DIM,),
        "patch_embed_v.proj.weight": (DIM, 3, 16, 16), "patch_embed_v.proj.bias": (DIM,),
        "modality_a": (1, 1, DIM), "modality_v": (1, 1, DIM),
        "pos_embed_a": (1, num_a, DIM), "pos_embed_v": (1, num_v, DIM),
    }
    for i in range(DEPTH):
        shapes.update(_block_keys(f"blocks_a.{i}", DIM) | _block_keys(f"blocks_v.{i}", DIM))
    shapes.update(_block_keys("blocks_u.0", DIM))
    for norm in ("norm_a", "norm_v", "norm"):
        shapes[f"{norm}.weight"] = shapes[f"{norm}.bias"] = (DIM,)
    if decoder:
        shapes.update({
            "decoder_embed.weight": (DEC_DIM, DIM), "decoder_embed.bias": (DEC_DIM,), "mask_token": (1, 1, DEC_DIM),
            "decoder_modality_a": (1, 1, DEC_DIM), "decoder_modality_v": (1, 1, DEC_DIM),
            "decoder_pos_embed_a": (1, num_a, DEC_DIM), "decoder_pos_embed_v": (1, num_v, DEC_DIM),
            "decoder_norm.weight": (DEC_DIM,), "decoder_norm.bias": (DEC_DIM,),
            "decoder_pred_a.weight": (256, DEC_DIM), "decoder_pred_a.bias": (256,),
            "decoder_pred_v.weight": (768, DEC_DIM), "decoder_pred_v.bias": (768,),
        } | _block_keys("decoder_blocks.0", DEC_DIM))
    generator = torch.Generator().manual_seed(seed)
    return {f"module.{k}": torch.randn(v, generator=generator) * 0.2 for k, v in shapes.items()}


def _ln(sd, name, x):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def _block(sd, prefix, x, heads, stream=""):
    """timm's Block as CAV-MAE runs it: x + attn(norm1(x)), x + mlp(norm2(x)), norms of `stream`."""
    b, n, c = x.shape
    p = {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")}
    qkv = F.linear(_ln(p, f"norm1{stream}", x), p["attn.qkv.weight"], p["attn.qkv.bias"])
    q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
    x = x + F.linear((attn @ v).transpose(1, 2).reshape(b, n, c), p["attn.proj.weight"], p["attn.proj.bias"])
    h = F.gelu(F.linear(_ln(p, f"norm2{stream}", x), p["mlp.fc1.weight"], p["mlp.fc1.bias"]))
    return x + F.linear(h, p["mlp.fc2.weight"], p["mlp.fc2.bias"])


def cavmae_features(sd, audio, image):
    """CAV-MAE's forward_feat (per-stream features) and the joint stream of its encoder."""
    spectrogram = audio.unsqueeze(1).transpose(2, 3)  # (B, 1, mel, time)
    a = F.conv2d(spectrogram, sd["patch_embed_a.proj.weight"], sd["patch_embed_a.proj.bias"], stride=16)
    a = a.flatten(2).transpose(1, 2) + sd["pos_embed_a"] + sd["modality_a"]
    v = F.conv2d(image, sd["patch_embed_v.proj.weight"], sd["patch_embed_v.proj.bias"], stride=16)
    v = v.flatten(2).transpose(1, 2) + sd["pos_embed_v"] + sd["modality_v"]
    for i in range(DEPTH):
        a, v = _block(sd, f"blocks_a.{i}", a, HEADS), _block(sd, f"blocks_v.{i}", v, HEADS)
    joint = _ln(sd, "norm", _block(sd, "blocks_u.0", torch.cat([a, v], dim=1), HEADS))
    a = _ln(sd, "norm_a", _block(sd, "blocks_u.0", a, HEADS, "_a"))
    v = _ln(sd, "norm_v", _block(sd, "blocks_u.0", v, HEADS, "_v"))
    return a, v, joint


def cavmae_decoder(sd, latent, num_audio):
    """CAV-MAE's forward_decoder with nothing masked: embed, positions, modality, blocks, norm, heads."""
    x = F.linear(latent, sd["decoder_embed.weight"], sd["decoder_embed.bias"])
    x = x + torch.cat([sd["decoder_pos_embed_a"], sd["decoder_pos_embed_v"]], dim=1)
    x = torch.cat([x[:, :num_audio] + sd["decoder_modality_a"], x[:, num_audio:] + sd["decoder_modality_v"]], dim=1)
    x = _ln(sd, "decoder_norm", _block(sd, "decoder_blocks.0", x, DEC_HEADS))
    return (F.linear(x[:, :num_audio], sd["decoder_pred_a.weight"], sd["decoder_pred_a.bias"]),
            F.linear(x[:, num_audio:], sd["decoder_pred_v.weight"], sd["decoder_pred_v.bias"]))


def _model(state, frames=1, **overrides):
    base = dataclasses.replace(get_config("tiny"), num_frames=frames, tubelet=(frames, 16, 16))
    config = cavmae_model_config(read_cavmae(state), base=base)
    return create_model(dataclasses.replace(config, num_heads=HEADS, decoder_heads=DEC_HEADS, **overrides)).eval()


def test_config_is_read_from_the_tensors():
    config = cavmae_model_config(read_cavmae(cavmae_state()))
    assert (config.embed_dim, config.depth, config.joint_depth, config.decoder_dim, config.decoder_depth) == (
        DIM, DEPTH, 1, DEC_DIM, 1)
    assert (config.frame_size, config.audio_frames, config.num_mel_bins) == (IMAGE, AUDIO_FRAMES, 128)
    assert config.mlp_ratio == 4.0
    assert config.norm_eps == 1e-5 and config.pos_embed == "learned" and config.proj_dim == DIM


def test_encoder_features_equal_cavmae():
    state = cavmae_state()
    model = _model(state)
    report = import_cavmae(model, state)
    sd = read_cavmae(state)
    audio, image = torch.randn(2, AUDIO_FRAMES, 128), torch.randn(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ref_a, ref_v, ref_joint = cavmae_features(sd, audio, image)
        ours = model.forward_features(video=image[:, None], audio=audio)
        emb_v = model.embed_video(image[:, None])
    torch.testing.assert_close(ours["audio_tokens"], ref_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["video_tokens"], ref_v, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["joint_tokens"], ref_joint, atol=1e-5, rtol=0)
    # no projection in CAV-MAE: the embedding is its normalised mean-pooled feature (its retrieval input)
    torch.testing.assert_close(emb_v, F.normalize(ref_v.mean(dim=1), dim=-1), atol=1e-5, rtol=0)
    assert report.unused == [] and report.missing == []
    assert any("identity" in n for n in report.notes)


def test_decoder_equals_cavmae_decoder():
    state = cavmae_state(seed=1)
    model = _model(state)
    import_cavmae(model, state)
    sd = read_cavmae(state)
    latent = torch.randn(2, 32 + 4, DIM)  # the joint encoder's [audio, video] tokens, all visible
    keep_all = random_masking(2, 32, 0.0), random_masking(2, 4, 0.0)
    with torch.no_grad():
        ours = model.decoder(latent[:, :32], latent[:, 32:], keep_all[0].ids_restore, keep_all[1].ids_restore,
                             (8, 4), (1, 2, 2))
        reference = cavmae_decoder(sd, latent, 32)
    torch.testing.assert_close(ours[0], reference[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[1], reference[1], atol=1e-5, rtol=0)


def test_tubelets_inflate_the_image_stream():
    state = cavmae_state(seed=2)
    model = _model(state, frames=2)
    report = import_cavmae(model, state)
    sd = read_cavmae(state)
    image = torch.randn(1, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours = model.forward_features(video=image[:, None].expand(1, 2, 3, IMAGE, IMAGE))["video_tokens"]
        _, reference, _ = cavmae_features(sd, torch.zeros(1, AUDIO_FRAMES, 128), image)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)  # one time step of 2-frame tubelets
    head = model.decoder.head_video.weight
    torch.testing.assert_close(head[:768], sd["decoder_pred_v.weight"])
    torch.testing.assert_close(head[768:], sd["decoder_pred_v.weight"])
    assert any("inflated over 2 frames" in n for n in report.notes)


def test_fine_tuned_checkpoint_reports_missing_and_unused():
    state = cavmae_state(seed=3, decoder=False)
    state["module.mlp_head.0.weight"], state["module.mlp_head.1.weight"] = torch.ones(DIM), torch.zeros(5, DIM)
    model = _model(state)
    before = model.decoder.embed.weight.clone()
    old_video = model.video_encoder.blocks[0].attn.qkv.weight.clone()
    report = import_cavmae(model, state)
    assert report.unused == ["mlp_head.0.weight", "mlp_head.1.weight"]
    assert "decoder.embed.weight" in report.missing and "video_encoder.norm.weight" not in report.missing
    assert torch.equal(model.decoder.embed.weight, before)
    assert not torch.equal(model.video_encoder.blocks[0].attn.qkv.weight, old_video)
    qkv = model.video_encoder.blocks[0].attn.qkv.weight
    torch.testing.assert_close(qkv, state["module.blocks_v.0.attn.qkv.weight"])
    assert "left as initialised" in report.summary() and "mlp_head.N.*" in report.summary()


def test_mismatches_are_clear_errors(tmp_path):
    state = cavmae_state()
    wrong_depth = create_model("tiny", embed_dim=DIM, depth=3, pos_embed="learned")
    with pytest.raises(ValueError, match="depth 2 in the checkpoint vs 3 in the model"):
        import_cavmae(wrong_depth, state)
    too_wide = _model(state, proj_dim=DIM)
    state["module.blocks_v.1.mlp.fc1.weight"] = torch.zeros(3 * DIM, DIM)
    with pytest.raises(ValueError, match=r"blocks.1.mlp.fc1.weight: source \(96, 32\) vs model \(128, 32\)"):
        import_cavmae(too_wide, state)
    with pytest.raises(ValueError, match="not a CAV-MAE checkpoint"):
        read_cavmae({"module.fc.weight": torch.zeros(2)})
    path = tmp_path / "cav-mae.pth"
    torch.save({"model": cavmae_state()}, path)  # a training checkpoint nesting the state dict
    assert "blocks_u.0.norm1_a.weight" in read_cavmae(path)


def test_cli_writes_a_model_folder(tmp_path, capsys):
    state = cavmae_state(seed=4)
    torch.save(state, tmp_path / "cav-mae.pth")
    code = main(["import-weights", "--base", "tiny", str(tmp_path / "cav-mae.pth"), str(tmp_path / "out"),
                 "num_frames=1", "tubelet=[1,16,16]", "num_heads=2", "decoder_heads=2"])
    assert code == 0
    model = load_model(tmp_path / "out").eval()
    audio, image = torch.randn(1, AUDIO_FRAMES, 128), torch.randn(1, 3, IMAGE, IMAGE)
    with torch.no_grad():
        ours = model.forward_features(video=image[:, None], audio=audio)
        ref_a, ref_v, _ = cavmae_features(read_cavmae(state), audio, image)
    torch.testing.assert_close(ours["audio_tokens"], ref_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours["video_tokens"], ref_v, atol=1e-5, rtol=0)
    report = json.loads((tmp_path / "out" / "import_report.json").read_text())
    assert report["missing"] == [] and report["unused"] == []
    assert "-> " + str(tmp_path / "out") in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    assert main(["import-weights", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    assert "no such folder or file" in capsys.readouterr().err
    torch.save(cavmae_state(), tmp_path / "c.pth")
    assert main(["import-weights", str(tmp_path / "c.pth"), str(tmp_path / "out"), "--target", "video"]) == 2
    assert main(["import-weights", str(tmp_path / "c.pth"), str(tmp_path / "out"), "embed_dimm=3"]) == 2
    assert "did you mean 'embed_dim'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
