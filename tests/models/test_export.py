"""Exports: encoders as transformers ViViT / AST folders with the same hidden states, embedding
functions as torch.export programs and ONNX models with the same outputs, and `avssl export`."""
from __future__ import annotations

import json

import pytest
import torch

import avssl
from avssl.cli import main
from avssl.models.av_model import AVModel
from avssl.models.classifier import AVClassifier
from avssl.models.export_graph import export_embedding_functions
from avssl.models.export_hf import export_transformers, prefix_token_mask

transformers = pytest.importorskip("transformers")


def small(**overrides) -> AVModel:
    """A tiny model whose every weight is random (norms, biases and the modality embedding included),
    so that a weight copied to the wrong place shows."""
    torch.manual_seed(0)
    model = avssl.create_model("tiny", embed_dim=32, num_heads=2, depth=2, joint_depth=1, num_frames=4, frame_size=32,
                               audio_frames=64, num_mel_bins=32, decoder_dim=32, proj_dim=16, **overrides).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def inputs(model: AVModel, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    cfg, gen = model.config, torch.Generator().manual_seed(1)
    return (torch.randn(batch, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size, generator=gen),
            torch.randn(batch, cfg.audio_frames, cfg.num_mel_bins, generator=gen))


@pytest.mark.parametrize("pos_embed", ["sincos", "learned"])
def test_transformers_export_gives_avssl_hidden_states(tmp_path, pos_embed):
    model = small(pos_embed=pos_embed)
    folders = export_transformers(model, tmp_path)
    video, audio = inputs(model)
    for name, x, encoder, key, prefix in (("video", video, model.video_encoder, "pixel_values", 1),
                                          ("audio", audio, model.audio_encoder, "input_values", 2)):
        hf = transformers.AutoModel.from_pretrained(folders[name]).eval()
        assert type(hf).__name__ == {"video": "VivitModel", "audio": "ASTModel"}[name]
        with torch.no_grad():
            out = hf(**{key: x}, attention_mask=prefix_token_mask(2, hf.config), output_hidden_states=True)
            tokens = encoder.forward_tokens(x, joint_blocks=model.joint_blocks)
            embedded = encoder.embed(x)
            unmasked = hf(**{key: x}).last_hidden_state[:, prefix:]
        torch.testing.assert_close(out.hidden_states[0][:, prefix:], embedded, rtol=0, atol=1e-5)
        torch.testing.assert_close(out.last_hidden_state[:, prefix:], tokens, rtol=0, atol=1e-5)
        assert len(out.hidden_states) == 1 + model.config.depth + model.config.joint_depth
        assert (unmasked - tokens).abs().max() > 1e-3  # without the mask the zero CLS token is attended to
        assert "attention_mask=prefix_token_mask" in (folders[name] / "README.md").read_text()


def test_a_classifier_exports_the_encoders_of_its_mode(tmp_path):
    classifier = AVClassifier(small(input_norm="clip"), 3, mode="audio")
    folders = export_transformers(classifier, tmp_path)
    assert list(folders) == ["audio"] and not (tmp_path / "video").exists()
    assert "input_norm='clip'" in (folders["audio"] / "README.md").read_text()
    assert json.loads((folders["audio"] / "config.json").read_text())["num_hidden_layers"] == 3


def test_torch_export_programs_match_eager(tmp_path):
    model = small(time_bins=2, contrastive_view="full", proj_norm="batch")
    graphs = export_embedding_functions(model, tmp_path, "pt2")
    assert [g.path.name for g in graphs] == ["video.pt2", "audio.pt2"]
    video, audio = inputs(model, batch=5)  # another batch size than traced and checked
    with torch.no_grad():
        for graph, x, eager in ((graphs[0], video, model.embed_video), (graphs[1], audio, model.embed_audio)):
            program = torch.export.load(str(graph.path)).module()
            torch.testing.assert_close(program(x), eager(x), rtol=0, atol=1e-5)
            assert graph.max_abs_diff <= 1e-5


@pytest.mark.slow  # the dynamo ONNX exporter takes ~15 s
def test_onnx_models_match_eager(tmp_path):
    pytest.importorskip("onnxscript", reason="the onnx export needs avssl[export] (onnx, onnxscript)")
    onnxruntime = pytest.importorskip("onnxruntime", reason="checking the onnx export needs onnxruntime")
    model = small()
    graphs = export_embedding_functions(model, tmp_path, "onnx")
    video, _ = inputs(model, batch=4)
    session = onnxruntime.InferenceSession(str(graphs[0].path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["video"]
    (embedding,) = session.run(None, {"video": video.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(embedding), model.embed_video(video), rtol=0, atol=1e-5)
    assert graphs[1].max_abs_diff <= 1e-5


def _fake_run(tmp_path, model: AVModel):
    """A run folder as `avssl pretrain` leaves it: config.yaml, metrics.jsonl, checkpoints/ with an index."""
    run = tmp_path / "run"
    model.save_pretrained(run / "checkpoints" / "step_0000010")
    (run / "checkpoints" / "index.json").write_text(json.dumps({"last": "step_0000010", "best": "step_0000010"}))
    (run / "config.yaml").write_text("model:\n  name: tiny\ndata:\n  train: corpus/train.csv\n  val: corpus/val.csv\n")
    records = [{"split": "train", "step": 10, "loss": 3.0},
               {"split": "val", "step": 10, "v2a_R@1": 12.5, "a2v_R@1": 8.25, "chance_R@1": 4.0, "val_loss": 2.5},
               {"split": "val", "step": 20, "v2a_R@1": 99.0, "a2v_R@1": 99.0, "chance_R@1": 4.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def test_cli_exports_a_run_with_its_model_card_and_as_transformers(tmp_path, capsys):
    model = small()
    run = _fake_run(tmp_path, model)
    assert main(["export", str(run), "--format", "hub", "--out", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "| v2a_R@1 | 12.5 |" in card and "| a2v_R@1 | 8.25 |" in card and "99" not in card  # step 10's
    assert "validation at step 10" in card and "`corpus/train.csv`" in card and "train: corpus/train.csv" in card
    loaded = avssl.load_model(tmp_path / "hub")
    assert torch.equal(loaded.video_proj.weight, model.video_proj.weight)
    assert main(["export", str(run), "--format", "transformers", "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "video" / "config.json").is_file() and (tmp_path / "hf" / "audio" / "config.json").is_file()
    assert "audio encoder ->" in capsys.readouterr().out
    assert main(["export", str(run), "--format", "pt2", "--out", str(tmp_path / "hf"), "--push-to-hub", "a/b"]) == 2
    assert "--push-to-hub goes with --format hub" in capsys.readouterr().err
