import pytest
import torch
from einops import rearrange

from avssl.masking import gather_tokens, random_masking
from avssl.models.config import ModelConfig
from avssl.models.encoders import AudioEncoder, VideoEncoder
from avssl.models.patch_embed import audio_patches, video_patches

CONFIG = ModelConfig(embed_dim=32, depth=1, num_heads=2, num_frames=4, frame_size=32, audio_frames=64)


@pytest.fixture(scope="module")
def encoders():
    torch.manual_seed(0)
    return VideoEncoder(CONFIG).eval(), AudioEncoder(CONFIG).eval()


@pytest.mark.parametrize("pos_embed", ["sincos", "learned"])
@pytest.mark.parametrize("frames,height,width", [(4, 32, 32), (2, 16, 48), (8, 64, 32)])
def test_video_encoder_any_tubelet_multiple(pos_embed, frames, height, width):
    encoder = VideoEncoder(ModelConfig(**{**CONFIG.__dict__, "pos_embed": pos_embed}))
    tokens = encoder.forward_tokens(torch.randn(2, frames, 3, height, width))
    assert tokens.shape == (2, (frames // 2) * (height // 16) * (width // 16), 32)
    assert encoder(torch.randn(2, frames, 3, height, width)).shape == (2, 32)


@pytest.mark.parametrize("pos_embed", ["sincos", "learned"])
@pytest.mark.parametrize("frames", [64, 16, 208, 1024])
def test_audio_encoder_any_patch_multiple_length(pos_embed, frames):
    encoder = AudioEncoder(ModelConfig(**{**CONFIG.__dict__, "pos_embed": pos_embed}))
    assert encoder.forward_tokens(torch.randn(2, frames, 128)).shape == (2, 8 * frames // 16, 32)


def test_sizes_that_do_not_divide_are_rejected(encoders):
    video, audio = encoders
    with pytest.raises(ValueError, match="tubelets"):
        video(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        audio(torch.randn(1, 70, 128))


def test_kept_tokens_are_dropped_before_the_blocks(encoders):
    video, _ = encoders
    clip = torch.randn(2, 4, 3, 32, 32)
    m = random_masking(2, 8, 0.5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(video.embed(clip, m.ids_keep), gather_tokens(video.embed(clip), m.ids_keep))
    assert video.forward_tokens(clip, m.ids_keep).shape == (2, 4, 32)


def test_patch_embedding_token_order_matches_patchify(encoders):
    """Token i of the embedding is a linear map of target patch i (video and audio)."""
    video, audio = encoders
    clip = torch.randn(2, 4, 3, 32, 32)
    weight = rearrange(video.patch_embed.proj.weight, "d c t h w -> d (t h w c)")
    expected = video_patches(clip, (2, 16, 16)) @ weight.T + video.patch_embed.proj.bias
    torch.testing.assert_close(video.patch_embed(clip), expected, rtol=1e-4, atol=1e-4)

    spec = torch.randn(2, 64, 128)
    weight = rearrange(audio.patch_embed.proj.weight, "d 1 p q -> d (p q)")
    expected = audio_patches(spec, 16) @ weight.T + audio.patch_embed.proj.bias
    torch.testing.assert_close(audio.patch_embed(spec), expected, rtol=1e-4, atol=1e-4)


def test_audio_grid_is_frequency_by_time(encoders):
    """CAV-MAE orientation: token index = mel band * time patches + time patch."""
    _, audio = encoders
    spec = torch.zeros(1, 64, 128)
    spec[0, 16:32, 96:112] = 1.0  # time patch 1, mel band 6
    targets = audio_patches(spec, 16)
    assert targets[0].abs().sum(-1).nonzero().flatten().tolist() == [6 * 4 + 1]
