"""Embedding a source, the retrieval index and query featurisation, on a tiny real checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import avssl
from avssl.data.decode import decode_clip
from avssl.data.synthetic import make_corpus, write_video
from avssl.models.factory import create_model, load_model
from avssl.tasks.embed import Embeddings, embed_source
from avssl.tasks.evaluate import retrieval_metrics
from avssl.tasks.report import save_wav
from avssl.tasks.retrieval import (Match, RetrievalIndex, embed_query, guess_modality, open_gallery,
                                   query_window)


def hand_built(n: int = 4, dim: int = 4, has_audio: list[bool] | None = None) -> Embeddings:
    """Clip i: video = e_i, audio = e_{(i+1) % n}; paths v0..v{n-1}; clip i spans [i, i+1) s."""
    eye = torch.eye(n, dim)
    return Embeddings(
        video_emb=eye, audio_emb=eye.roll(1, dims=1), paths=[f"v{i}.mp4" for i in range(n)],
        clip_start=torch.arange(n, dtype=torch.float64), clip_end=torch.arange(1, n + 1, dtype=torch.float64),
        has_audio=torch.tensor(has_audio or [True] * n), labels=torch.tensor([0, 0, 1, 1][:n]),
        classes=["a", "b"],
    )


def test_search_orders_by_score_in_both_directions() -> None:
    index = RetrievalIndex(hand_built())
    query = F.normalize(torch.tensor([0.0, 0.9, 0.4, 0.1]), dim=0)
    # audio of clip i is e_{i+1}: the query is mostly e_1 (clip 0), then e_2 (clip 1), then e_3 (clip 2)
    audio_hits = index.search(query, k=3, target="audio")
    assert [m.path for m in audio_hits] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    assert audio_hits[0] == Match(pytest.approx(float(query[1])), "v0.mp4", 0.0, 1.0)
    assert [m.score for m in audio_hits] == sorted((m.score for m in audio_hits), reverse=True)
    video_hits = index.search(query, k=2, target="video")
    assert [m.path for m in video_hits] == ["v1.mp4", "v2.mp4"]
    assert len(index.search(query, k=100, target="video")) == 4


def test_search_skips_silent_clips_and_checks_dimensions() -> None:
    index = RetrievalIndex(hand_built(has_audio=[False, True, True, True]))
    hits = index.search(torch.tensor([0.0, 1.0, 0.0, 0.0]), k=4, target="audio")
    assert "v0.mp4" not in [m.path for m in hits] and len(hits) == 3
    with pytest.raises(ValueError, match="dimensions"):
        index.search(torch.ones(5), k=1)
    with pytest.raises(ValueError, match="target"):
        index.search(torch.ones(4), k=1, target="text")  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_embeddings_file_round_trip(tmp_path: Path, suffix: str) -> None:
    original = hand_built()
    original.checkpoint = "runs/x"
    loaded = Embeddings.load(original.save(tmp_path / f"gallery{suffix}"))
    for name in ("video_emb", "audio_emb", "clip_start", "clip_end", "has_audio", "labels"):
        assert torch.equal(getattr(loaded, name), getattr(original, name)), name
    assert (loaded.paths, loaded.classes, loaded.checkpoint) == (original.paths, original.classes, "runs/x")
    assert RetrievalIndex.load(tmp_path / f"gallery{suffix}").search(torch.eye(4)[1], 1)[0].path == "v0.mp4"


def test_embeddings_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        hand_built().save(tmp_path / "gallery.npy")
    with pytest.raises(FileNotFoundError):
        Embeddings.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an avssl embeddings file"):
        Embeddings.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="rows"):
        Embeddings(torch.zeros(2, 4), torch.zeros(3, 4), ["a", "b"], torch.zeros(2), torch.zeros(2),
                   torch.ones(2, dtype=torch.bool), torch.zeros(2))


def test_retrieval_metrics_on_hand_built_embeddings() -> None:
    emb = hand_built()
    emb.audio_emb = emb.video_emb.clone()  # every clip's sound is its own frames' nearest
    metrics = retrieval_metrics(emb)
    assert metrics["v2a_R@1"] == metrics["a2v_R@1"] == 100.0
    assert metrics["num_clips"] == 4 and metrics["chance_R@1"] == 25.0 and metrics["v2a_class_P@1"] == 100.0
    emb.has_audio = torch.tensor([True, True, False, False])
    assert retrieval_metrics(emb)["num_clips"] == 2
    emb.has_audio[:] = False
    with pytest.raises(ValueError, match="sound"):
        retrieval_metrics(emb)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), num_classes=2, videos_per_class=3, duration=2.5, seed=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return create_model("tiny").save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def gallery(corpus: Path, checkpoint: Path) -> Embeddings:
    return embed_source(checkpoint, corpus / "train.csv", num_workers=0, batch_size=3, show_progress=False)


def test_embed_source_rows(gallery: Embeddings, corpus: Path) -> None:
    n = len((corpus / "train.csv").read_text().splitlines()) - 1
    assert len(gallery) == n and gallery.video_emb.shape == gallery.audio_emb.shape == (n, 64)
    assert torch.allclose(gallery.video_emb.norm(dim=1), torch.ones(n), atol=1e-5)
    # one centred 2 s clip per 2.5 s video
    assert torch.allclose(gallery.clip_start, torch.full((n,), 0.25, dtype=torch.float64))
    assert torch.allclose(gallery.clip_end, torch.full((n,), 2.25, dtype=torch.float64))
    assert bool(gallery.has_audio.all()) and gallery.classes == ["circle_low", "square_mid"]
    assert sorted(set(gallery.labels.tolist())) == [0, 1]
    assert all(Path(p).is_file() for p in gallery.paths)


def test_several_clips_per_video_span_the_video(corpus: Path, checkpoint: Path) -> None:
    emb = embed_source(checkpoint, corpus / "val.csv", clips_per_video=3, num_workers=0, show_progress=False)
    assert len(emb) == 3 * len(set(emb.paths))
    assert emb.clip_start[:3].tolist() == pytest.approx([0.0, 0.25, 0.5])


def test_video_and_audio_queries_match_their_gallery_rows(gallery: Embeddings, checkpoint: Path) -> None:
    model = load_model(checkpoint)
    index = RetrievalIndex(gallery)
    for row in (0, len(gallery) - 1):
        video_q = embed_query(model, gallery.paths[row], "video")
        audio_q = embed_query(model, gallery.paths[row], "audio")
        assert torch.allclose(video_q, gallery.video_emb[row], atol=1e-4)
        assert torch.allclose(audio_q, gallery.audio_emb[row], atol=1e-4)
        # a clip's frames searched against gallery frames find that clip first
        assert index.search(video_q, 1, target="video")[0].path == gallery.paths[row]
        assert index.search(audio_q, 1, target="audio")[0].path == gallery.paths[row]


def test_audio_file_and_image_queries(gallery: Embeddings, checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint)
    start, end = float(gallery.clip_start[0]), float(gallery.clip_end[0])
    clip = decode_clip(gallery.paths[0], start, end, 8)
    wav = save_wav(clip.audio, 16000, tmp_path / "query.wav")
    assert guess_modality(wav) == "audio" and query_window(wav, 2.0) == pytest.approx((0.0, 2.0))
    assert torch.allclose(embed_query(model, wav, "audio"), gallery.audio_emb[0], atol=2e-3)
    # a still image and a video showing only that image embed alike
    frame = clip.frames[4].numpy()
    Image.fromarray(frame).save(tmp_path / "still.png")
    still = write_video(tmp_path / "still.mp4", frame[None].repeat(40, axis=0), fps=16)
    assert guess_modality(tmp_path / "still.png") == "video"
    image_q = embed_query(model, tmp_path / "still.png", "video")
    assert float(image_q @ embed_query(model, still, "video")) > 0.98
    with pytest.raises(ValueError, match="image"):
        embed_query(model, tmp_path / "still.png", "audio")
    with pytest.raises(ValueError, match="no audio"):
        embed_query(model, still, "audio")
    with pytest.raises(FileNotFoundError):
        embed_query(model, tmp_path / "absent.mp4", "video")


def test_open_gallery_from_file_or_source(gallery: Embeddings, corpus: Path, checkpoint: Path,
                                          tmp_path: Path) -> None:
    model = load_model(checkpoint)
    from_file = open_gallery(gallery.save(tmp_path / "g.safetensors"), model)
    from_source = open_gallery(corpus / "train.csv", model, num_workers=0, show_progress=False)
    assert torch.allclose(from_file.embeddings.video_emb, from_source.embeddings.video_emb, atol=1e-5)
    built = avssl.RetrievalIndex.build(checkpoint, corpus / "train.csv", num_workers=0, show_progress=False)
    assert torch.allclose(built.embeddings.audio_emb, from_file.embeddings.audio_emb, atol=1e-5)
    other = create_model("tiny", proj_dim=32)
    with pytest.raises(ValueError, match="same checkpoint"):
        open_gallery(tmp_path / "g.safetensors", other)
