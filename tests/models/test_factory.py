import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import avssl
from avssl.models.config import MODEL_CONFIGS, ModelConfig


def test_list_and_create_named_models():
    assert avssl.list_models() == ["tiny", "small", "base"]
    model = avssl.create_model("tiny", num_frames=4, tubelet=[2, 16, 16], proj_dim=32)
    assert model.config.num_frames == 4 and model.config.tubelet == (2, 16, 16)
    assert model.video_proj.out_features == 32
    assert MODEL_CONFIGS["tiny"].num_frames == 8  # the registry is not modified


def test_unknown_names_and_keys_name_the_nearest():
    with pytest.raises(ValueError, match="'embed_dim'"):
        avssl.create_model("tiny", embed_dimm=64)
    with pytest.raises(ValueError, match="'tiny'"):
        avssl.create_model("tyny")
    with pytest.raises(ValueError, match="video_masking"):
        avssl.create_model("tiny", video_masking="blocks")
    with pytest.raises(ValueError, match="num_heads"):
        avssl.create_model("tiny", num_heads=3)


def test_base_matches_cav_mae_sizes():
    base = MODEL_CONFIGS["base"]
    assert (base.embed_dim, base.depth, base.joint_depth, base.num_heads) == (768, 11, 1, 12)
    assert (base.decoder_dim, base.decoder_depth, base.audio_frames, base.audio_grid) == (512, 8, 1008, (8, 63))


def test_audio_frames_match_the_data_pipeline():
    audio = pytest.importorskip("avssl.data.audio")
    for config in MODEL_CONFIGS.values():
        assert audio.target_frames(config.clip_duration) == config.audio_frames


def _outputs(model):
    gen = torch.Generator().manual_seed(0)
    video, audio = torch.randn(2, 8, 3, 64, 64, generator=gen), torch.randn(2, 208, 128, generator=gen)
    with torch.no_grad():
        return model(video, audio, generator=torch.Generator().manual_seed(1)), model.embed_video(video)


@pytest.mark.parametrize("overrides", [{}, {"pos_embed": "learned", "learnable_temperature": True}])
def test_save_load_round_trip_is_bit_exact(tmp_path, overrides):
    torch.manual_seed(0)
    model = avssl.create_model("tiny", **overrides).eval()
    folder = model.save_pretrained(tmp_path / "saved")
    assert json.loads((folder / "config.json").read_text())["tubelet"] == [2, 16, 16]
    for loaded in (avssl.load_model(folder), avssl.load_model(folder / "model.safetensors")):
        assert loaded.config == model.config
        assert loaded.state_dict().keys() == model.state_dict().keys()
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        (first, emb), (second, emb2) = _outputs(model), _outputs(loaded.eval())
        assert torch.equal(emb, emb2)
        for key in first:
            assert torch.equal(first[key], second[key]), key


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        avssl.load_model(tmp_path)
    model = avssl.create_model("tiny")
    folder = model.save_pretrained(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    state.pop("joint_norm.weight")
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="joint_norm.weight"):
        avssl.load_model(folder)
    (folder / "config.json").write_text(json.dumps({"embed_dimm": 3}))
    with pytest.raises(ValueError, match="embed_dim"):
        avssl.load_model(folder)


def test_config_is_a_dataclass_with_preprocessing_facts():
    config = ModelConfig()
    assert (config.audio_rate, config.fbank_mean, config.fbank_std) == (16000, -5.081, 4.4849)
    assert config.image_mean == (0.485, 0.456, 0.406)
