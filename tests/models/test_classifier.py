"""AVClassifier: modes and fusions, trimming, save/load round trip, backbones, layer-wise lr decay."""
from __future__ import annotations

import json

import pytest
import torch

from avssl.models.classifier import AVClassifier, layer_id
from avssl.models.factory import create_model, is_classifier_folder, load_backbone, load_classifier
from avssl.train.optim import layer_decay_groups, param_groups


@pytest.fixture()
def inputs():
    torch.manual_seed(0)
    return torch.randn(2, 8, 3, 64, 64), torch.randn(2, 208, 128)


@pytest.mark.parametrize("mode,fusion,dim", [
    ("video", "concat", 128), ("audio", "concat", 128), ("av", "concat", 256), ("av", "mean", 128),
    ("av", "joint", 128),
])
def test_modes_and_fusions(inputs, mode, fusion, dim):
    video, audio = inputs
    model = AVClassifier(create_model("tiny"), 5, mode=mode, fusion=fusion)
    assert model.feature_dim == dim
    assert model(video, audio).shape == (2, 5)
    assert model.features(video, audio).shape == (2, dim)
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("backbone.decoder", "backbone.video_proj", "backbone.contrastive")) for n in names)
    assert any(n.startswith("backbone.audio_encoder") for n in names) == (mode != "video")
    assert any(n.startswith("backbone.video_encoder") for n in names) == (mode != "audio")
    assert any(n.startswith("backbone.joint_norm") for n in names) == (fusion == "joint" and mode == "av")


def test_missing_modality_is_an_error(inputs):
    video, _ = inputs
    model = AVClassifier(create_model("tiny"), 3, mode="av")
    with pytest.raises(ValueError, match="needs video and audio"):
        model(video, None)
    with pytest.raises(ValueError, match="mode"):
        AVClassifier(create_model("tiny"), 3, mode="visual")


def test_fusion_mean_averages_the_streams(inputs):
    video, audio = inputs
    model = AVClassifier(create_model("tiny"), 3, mode="av", fusion="mean").eval()
    pooled_video = model.backbone.forward_features(video=video)["video"]
    pooled_audio = model.backbone.forward_features(audio=audio)["audio"]
    assert torch.allclose(model.features(video, audio), (pooled_video + pooled_audio) / 2, atol=1e-6)


def test_joint_fusion_runs_the_joint_blocks_once_with_the_features_and_gradients_of_forward_features(inputs):
    """fusion=joint reads only the joint stream: one pass through each joint block per forward (not three:
    the per-stream passes `forward_features` adds were thrown away), the same logits and gradients."""
    video, audio = inputs
    model = AVClassifier(create_model("tiny"), 3, mode="av", fusion="joint")
    calls = []
    model.backbone.joint_blocks[0].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    logits = model(video, audio)
    features = model.backbone.forward_features(video=video, audio=audio)  # the former path
    joint = features["joint"]
    assert len(calls) == 4  # 1 for the classifier, 3 for forward_features: audio alone, video alone, both
    assert calls[0] == calls[3] == features["joint_tokens"].shape[1]
    torch.testing.assert_close(logits, model.forward_head(joint), rtol=0, atol=0)
    new_grads = torch.autograd.grad(logits.sum(), list(model.parameters()), allow_unused=True)
    old_grads = torch.autograd.grad(model.forward_head(joint).sum(), list(model.parameters()), allow_unused=True)
    for new, old in zip(new_grads, old_grads):
        assert (new is None) == (old is None) and (new is None or torch.equal(new, old))


def test_gradients_reach_the_encoders(inputs):
    video, audio = inputs
    model = AVClassifier(create_model("tiny"), 3, mode="av")
    model(video, audio).logsumexp(dim=1).mean().backward()
    for name in ("backbone.video_encoder.patch_embed.proj.weight", "backbone.audio_encoder.blocks.0.attn.qkv.weight",
                 "backbone.joint_blocks.0.mlp.fc1.weight", "head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_save_load_round_trip(tmp_path, inputs):
    video, audio = inputs
    model = AVClassifier(create_model("tiny"), 3, mode="av", fusion="joint", dropout=0.2, classes=["a", "b", "c"],
                         multi_label=True).eval()
    model.save_pretrained(tmp_path / "clf")
    config = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert config["classifier"] == {"mode": "av", "fusion": "joint", "classes": ["a", "b", "c"], "multi_label": True,
                                    "dropout": 0.2, "time_bins": 0}
    assert is_classifier_folder(tmp_path / "clf")
    loaded = load_classifier(tmp_path / "clf").eval()
    assert (loaded.classes, loaded.mode, loaded.fusion, loaded.multi_label) == (["a", "b", "c"], "av", "joint", True)
    assert torch.equal(model(video, audio), loaded(video, audio))


def test_time_bins_pool_the_clip_and_its_stretches_in_order(inputs):
    video, _ = inputs  # 8 frames: 4 tubelet steps
    backbone = create_model("tiny", time_bins=2, contrastive_view="full")
    model = AVClassifier(backbone, 3, mode="video").eval()  # pools as the backbone's projection: 2 stretches
    assert model.time_bins == 2 and model.feature_dim == 3 * 128
    features = model.features(video)
    tokens = model.backbone.forward_features(video=video)["video_tokens"].unflatten(1, (4, 16))  # (B, steps, HW, D)
    assert torch.allclose(features[:, :128], tokens.mean(dim=(1, 2)), atol=1e-5)
    stretches = features[:, 128:].unflatten(1, (128, 2))  # (B, D, stretch), earliest stretch first
    assert torch.allclose(stretches[..., 0], tokens[:, :2].mean(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(stretches[..., 1], tokens[:, 2:].mean(dim=(1, 2)), atol=1e-5)
    assert AVClassifier(create_model("tiny", time_bins=2, contrastive_view="full"), 3, time_bins=0).feature_dim == 128
    joint = AVClassifier(create_model("tiny", time_bins=2, contrastive_view="full"), 3, mode="av", fusion="joint")
    assert joint.time_bins == 0  # the joint stream interleaves both modalities' tokens: its mean alone
    with pytest.raises(ValueError, match="time_bins"):
        AVClassifier(create_model("tiny"), 3, time_bins=-1)


def test_time_binned_classifiers_round_trip_and_older_folders_pool_the_mean(tmp_path, inputs):
    video, _ = inputs
    model = AVClassifier(create_model("tiny", time_bins=2, contrastive_view="full"), 3).eval()
    model.save_pretrained(tmp_path / "clf")
    loaded = load_classifier(tmp_path / "clf")
    assert loaded.time_bins == 2 and torch.equal(model(video), loaded(video))
    config_path = tmp_path / "clf" / "config.json"
    config = json.loads(config_path.read_text())
    del config["classifier"]["time_bins"]  # written before classifiers pooled time stretches
    config_path.write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="head.weight"):  # its head was trained on the mean: 128 features
        load_classifier(tmp_path / "clf")


def test_pretraining_folders_are_backbones_not_classifiers(tmp_path):
    create_model("tiny").save_pretrained(tmp_path / "pre")
    assert not is_classifier_folder(tmp_path / "pre")
    with pytest.raises(ValueError, match="pretraining model, not a classifier"):
        load_classifier(tmp_path / "pre")
    AVClassifier(create_model("tiny"), 2).save_pretrained(tmp_path / "clf")
    with pytest.raises(ValueError, match="fine-tuned classifier"):
        load_backbone(tmp_path / "clf")


def test_load_backbone_from_weights_scratch_and_overrides(tmp_path):
    torch.manual_seed(0)
    saved = create_model("tiny")
    saved.save_pretrained(tmp_path / "pre")
    loaded = load_backbone(tmp_path / "pre", {"name": "base", "drop_path": 0.1})  # name: the weights decide
    assert loaded.config.name == "tiny" and loaded.config.drop_path == 0.1
    key = "video_encoder.blocks.1.attn.qkv.weight"
    assert torch.equal(loaded.state_dict()[key], saved.state_dict()[key])
    scratch = load_backbone("none", {"name": "tiny", "embed_dim": 64})
    assert scratch.config.embed_dim == 64
    with pytest.raises(ValueError, match="change the shapes"):
        load_backbone(tmp_path / "pre", {"embed_dim": 64})


def test_reset_classifier():
    model = AVClassifier(create_model("tiny"), 3)
    model.reset_classifier(7, [f"c{i}" for i in range(7)])
    assert model.head.out_features == 7 and model.classes[-1] == "c6"
    with pytest.raises(ValueError, match="class names"):
        model.reset_classifier(2, ["only-one"])


def test_layer_decay_groups_cover_every_parameter_once():
    model = AVClassifier(create_model("tiny"), 4, mode="av")
    depth, joint = model.config.depth, model.config.joint_depth
    assert layer_id("backbone.video_encoder.patch_embed.proj.weight", depth, joint) == 0
    assert layer_id("backbone.audio_encoder.blocks.1.mlp.fc1.weight", depth, joint) == 2
    assert layer_id("backbone.joint_blocks.0.attn.qkv.weight", depth, joint) == depth + 1
    assert layer_id("head.weight", depth, joint) == depth + joint + 1
    groups = layer_decay_groups(model, 1e-3, 0.05, 0.5)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert lr_of[id(params["head.weight"])] == pytest.approx(1e-3)
    top = depth + joint + 1
    assert lr_of[id(params["backbone.video_encoder.patch_embed.proj.weight"])] == pytest.approx(1e-3 * 0.5**top)
    assert wd_of[id(params["head.weight"])] == 0.05 and wd_of[id(params["head.bias"])] == 0.0
    assert groups[0]["lr"] == pytest.approx(1e-3)  # the logged lr (first group) is the head's
    flat = layer_decay_groups(model, 1e-3, 0.05, 1.0)
    assert {g["lr"] for g in flat} == {1e-3}


def test_the_model_declares_what_skips_weight_decay():
    model = AVClassifier(create_model("tiny", pos_embed="learned"), 4, mode="av")
    exempt = model.no_weight_decay()
    assert {"backbone.video_encoder.modality_embed", "backbone.audio_encoder.pos_embed.weight"} <= exempt
    assert "backbone.video_encoder.patch_embed.proj.weight" not in exempt and "head.weight" not in exempt
    undecayed = {id(p) for p in param_groups(model, 0.05)[1]["params"]}
    params = dict(model.named_parameters())
    assert all(id(params[name]) in undecayed for name in exempt)
    assert id(params["head.bias"]) in undecayed and id(params["head.weight"]) not in undecayed

    class Declares(torch.nn.Module):  # a model's own declaration replaces the encoders' layout
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(2, 2))
            self.token_mixer = torch.nn.Linear(2, 2)

        def no_weight_decay(self) -> set[str]:
            return {"scale"}

    toy = Declares()
    decay, no_decay = param_groups(toy, 0.05)
    assert [id(p) for p in no_decay["params"]] == [id(toy.scale), id(toy.token_mixer.bias)]
    assert [id(p) for p in decay["params"]] == [id(toy.token_mixer.weight)]


def test_the_contrastive_head_and_its_batch_norm_are_dropped():
    model = AVClassifier(create_model("tiny", proj_norm="batch"), 3, mode="video")
    keys = model.state_dict().keys()
    assert not [k for k in keys if k.startswith(("backbone.video_proj", "backbone.audio_proj", "backbone.decoder"))]
    logits = model(video=torch.randn(1, 8, 3, 64, 64))  # one clip: no batch statistics are needed
    assert logits.shape == (1, 3)
