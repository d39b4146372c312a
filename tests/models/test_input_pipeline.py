"""One input pipeline per model config (avssl.data.pipeline): an imported CAV-MAE checkpoint (tiny, saved
by the test through `avssl import-weights`) is fed through every command's data path (pretraining, fine-
tuning, embedding, retrieval queries, evaluation), and each gets the tensors CAV-MAE's own data path
makes for those weights: the first audio channel, the spectrogram zero-padded to the positions' length
(never resampled), CAV-MAE's statistics, the frame resized straight to the crop, no SpecAugment in
pretraining."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from einops import rearrange
from test_convert_cavmae import AUDIO_FRAMES, IMAGE, cavmae_state

from avssl.cli import main
from avssl.config import load_config
from avssl.data.audio import FBANK_MEAN, FBANK_STD, log_mel
from avssl.data.decode import decode_clip
from avssl.data import pipeline as pipeline_module
from avssl.data.pipeline import input_pipeline
from avssl.data.synthetic import write_video
from avssl.models.factory import load_model
from avssl.recipes import finetune as finetune_module
from avssl.tasks.embed import clip_dataset
from avssl.tasks.retrieval import audio_transform, query_audio, query_frames, video_transform
from avssl.tasks.video_eval import multi_view_dataset
from avssl.recipes.pretrain import PretrainConfig, build_datasets

CLIP = 0.4  # seconds: 38 fbank frames, padded to the checkpoint's 64 (avssl alone would pad 0.4 s to 48)
RATE = 16000


@pytest.fixture(scope="module")
def imported_folder(tmp_path_factory):
    """A tiny CAV-MAE checkpoint imported by the CLI: 64-frame audio positions, 32 px frames, one frame."""
    folder = tmp_path_factory.mktemp("cavmae")
    torch.save(cavmae_state(seed=7), folder / "cav-mae.pth")
    assert main(["import-weights", "--base", "tiny", str(folder / "cav-mae.pth"), str(folder / "model"),
                 "num_frames=1", "tubelet=[1,16,16]", "num_heads=2", "decoder_heads=2", f"clip_duration={CLIP}"]) == 0
    return folder / "model"


@pytest.fixture(scope="module")
def imported(imported_folder):
    return load_model(imported_folder)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four 1.2 s landscape videos (128 x 96) with stereo sound whose channels differ (left: a tone,
    right: noise), labelled a / b, as a CSV manifest."""
    root = tmp_path_factory.mktemp("stereo")
    rng = np.random.default_rng(0)
    t = np.arange(round(1.2 * RATE)) / RATE
    rows = ["path,label"]
    for k in range(4):
        y, x = np.mgrid[0:96, 0:128]
        ramp = np.clip(x + y + 5 * k, 0, 255)  # a linear ramp: any two resizers agree on it closely
        frames = np.repeat(np.stack([ramp, 255 - ramp, np.full_like(ramp, 40 * k)], -1)[None], 12, 0).astype(np.uint8)
        left = 0.3 * np.sin(2 * np.pi * (300 + 200 * k) * t)
        right = 0.2 * rng.standard_normal(t.shape)
        write_video(root / f"{k}.avi", frames, 10, np.stack([left, right]).astype(np.float32), RATE)
        rows.append(f"{k}.avi,{'ab'[k % 2]}")
    (root / "all.csv").write_text("\n".join(rows) + "\n")
    return root


def cavmae_view(path, start: float, end: float, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What CAV-MAE's dataloader makes of a window, written out: the middle frame resized (short side)
    straight to `size` and centre-cropped, ImageNet-normalised; the first channel's log-mel, zero-padded
    to the checkpoint's 64 frames, then (x - mean) / std with its AudioSet statistics."""
    full = decode_clip(path, start, end, 1, audio_channel=0)
    frame = TF.center_crop(TF.resize(rearrange(full.frames, "t h w c -> t c h w"), [size], antialias=True), [size])
    frame = TF.normalize(TF.to_dtype(frame, torch.float32, scale=True), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    fbank = log_mel(full.audio)
    fbank = torch.nn.functional.pad(fbank, (0, 0, 0, AUDIO_FRAMES - fbank.shape[0]))
    return frame, (fbank - FBANK_MEAN) / FBANK_STD


def test_imported_cavmae_config_claims_cavmae_input(imported):
    cfg = imported.config
    assert (cfg.audio_frames, cfg.audio_channel, cfg.eval_crop_fraction, cfg.frame_size) == (AUDIO_FRAMES, 0, 1.0, IMAGE)
    pipe = input_pipeline(cfg)
    assert pipe.short_side == IMAGE and pipe.audio_frames == AUDIO_FRAMES


def test_every_command_feeds_the_imported_weights_what_cavmae_would(imported, imported_folder, corpus, tmp_path,
                                                                    monkeypatch, caplog):
    cfg = imported.config
    source = corpus / "all.csv"
    path = str(corpus / "0.avi")
    start, end = 0.4, 0.8  # the centre window every evaluation path takes of a 1.2 s video
    ref_video, ref_audio = cavmae_view(path, start, end, IMAGE)

    monkeypatch.setattr(pipeline_module, "_REPORTED", set())  # said once per process: again here
    with caplog.at_level("INFO", logger="avssl.data.pipeline"):
        train, val = build_datasets(load_config(PretrainConfig, None, [f"data.train={source}", f"data.val={source}"]),
                                    cfg, tmp_path)
    views = {"embed": clip_dataset(imported, source)[0], "pretrain validation": val[0],
             "evaluation": multi_view_dataset(source, model_config=cfg, clips=1, crops=1)[0]}
    views["evaluation"] = {**views["evaluation"], "video": views["evaluation"]["video"][0]}  # its one crop
    views["retrieval query"] = {"video": video_transform(cfg)(query_frames(path, cfg)),
                                "audio": audio_transform(cfg)(query_audio(path, cfg))}

    # fine-tuning: its training set and its validation views, caught before any training step
    caught = {}
    monkeypatch.setattr(finetune_module, "make_validator", lambda dataset, *a: caught.setdefault("val", dataset))

    class Stop(Exception):
        pass

    def stop(model, loader, *args, **kwargs):
        caught["train"] = loader.dataset
        raise Stop

    monkeypatch.setattr(finetune_module, "Trainer", stop)
    ft_cfg = load_config(finetune_module.FinetuneConfig, None, [
        f"init={imported_folder}",
        f"data.train={source}", f"data.val={source}", f"out={tmp_path / 'ft'}", "data.num_workers=0"])
    with pytest.raises(Stop):
        finetune_module.run_finetune(ft_cfg)
    views["fine-tuning validation"] = {**caught["val"][0], "video": caught["val"][0]["video"][0]}

    for name, item in views.items():
        assert item["video"].shape == (1, 3, IMAGE, IMAGE), name
        assert item["audio"].shape == (AUDIO_FRAMES, 128), name
        assert (item["video"][0] - ref_video[0]).abs().mean() < 0.05, name  # decoder-side vs torchvision resize
        torch.testing.assert_close(item["audio"], ref_audio, atol=1e-4, rtol=0, msg=name)
        # the padding is CAV-MAE's: zeros before normalisation, 26 frames after the clip's 38
        pad = (0.0 - FBANK_MEAN) / FBANK_STD
        assert torch.allclose(item["audio"][38:], torch.full((AUDIO_FRAMES - 38, 128), pad)), name
    # the views agree with each other exactly (one pipeline), and not with the zoomed 0.875 view
    for name, item in views.items():
        torch.testing.assert_close(item["video"], views["embed"]["video"], atol=1e-6, rtol=0, msg=name)
    zoomed = decode_clip(path, start, end, 1, short_side=round(IMAGE / 0.875))
    zoomed = TF.center_crop(rearrange(zoomed.frames, "t h w c -> t c h w"), [IMAGE])
    zoomed = TF.normalize(TF.to_dtype(zoomed, torch.float32, scale=True), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    ours, theirs = (views["embed"]["video"] - ref_video).abs().mean(), (zoomed - ref_video).abs().mean()
    assert ours * 2 < theirs, (ours, theirs)  # measured: 0.023 vs 0.060
    # the right channel differs: the mean of both would be another input
    mean_audio = log_mel(decode_clip(path, start, end, 1, with_video=False).audio)
    assert not torch.allclose(ref_audio[:38], (mean_audio - FBANK_MEAN) / FBANK_STD, atol=0.1)

    # training clips: the same shapes and statistics; no SpecAugment band in pretraining (CAV-MAE)
    for name, dataset in {"pretraining": train, "fine-tuning": caught["train"]}.items():
        item = dataset[0]
        assert item["video"].shape == (1, 3, IMAGE, IMAGE) and item["audio"].shape == (AUDIO_FRAMES, 128), name
        assert dataset.pipeline == input_pipeline(cfg), name
    spec = train[1]["audio"]
    assert not (spec == 0).all(dim=0).any() and not (spec == 0).all(dim=1).any()
    assert "0.4 s clips give 38 spectrogram frames; the model takes 64, so 26 silent frames are padded" in caplog.text

