"""Cross-modal retrieval: nearest sounds for frames, nearest frames for a sound.

`RetrievalIndex` holds a gallery of clip embeddings (from `avssl embed` or built on the
fly) and answers `search(query_emb, k, target=...)` with one matrix product. Queries are
featurised here from an image (repeated as a still clip), a video file (the frames of its
centre clip) or the sound of an audio/video file, with the same decoder and evaluation
transforms as the dataset, so a query looks to the model exactly like a gallery clip.

    >>> from avssl.models.factory import load_model
    >>> from avssl.tasks.retrieval import embed_query
    >>> model = load_model("runs/pretrain").eval()          # a run folder: its best checkpoint
    >>> index = avssl.RetrievalIndex.load("gallery.pt")          # from `avssl embed`, or:
    >>> index = avssl.RetrievalIndex.build(model, "videos/")     # embed a folder now
    >>> index.search(embed_query(model, "dog.jpg", "video"), k=5, target="audio")
    [Match(score=0.62, path='videos/dog_bark.mp4', start=3.0, end=5.0), ...]
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from PIL import Image

from avssl.data.audio import AudioTransform
from avssl.data.decode import DecodeError, DecodedClip
from avssl.data.pipeline import input_pipeline
from avssl.data.probe import VideoInfo, probe_file
from avssl.data.sampling import make_sampler
from avssl.data.video import VideoTransform
from avssl.models.av_model import AVModel
from avssl.models.config import ModelConfig
from avssl.tasks.embed import SUFFIXES, Embeddings, embed_source

log = logging.getLogger(__name__)

Modality = Literal["video", "audio"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class Match(NamedTuple):
    """One search result: cosine score and the clip it points to."""

    score: float
    path: str
    start: float
    end: float


class RetrievalIndex:
    """A gallery of clips searchable by a video or an audio query embedding."""

    def __init__(self, embeddings: Embeddings) -> None:
        self.embeddings = embeddings
        self._audio_rows = torch.nonzero(embeddings.has_audio.bool()).flatten()

    @classmethod
    def load(cls, path: str | Path) -> "RetrievalIndex":
        """An index over an embeddings file written by `avssl embed` (.pt or .safetensors)."""
        return cls(Embeddings.load(path))

    @classmethod
    def build(cls, checkpoint: str | Path | AVModel, source: str | Path, **embed_kwargs: Any) -> "RetrievalIndex":
        """An index over every clip of `source` (folder, class folders or CSV), embedded now with a
        checkpoint path or a model; `embed_kwargs` go to `avssl.tasks.embed.embed_source`."""
        return cls(embed_source(checkpoint, source, **embed_kwargs))

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        """Embedding size of the gallery (must match the query model's)."""
        return int(self.embeddings.video_emb.shape[1])

    def search(self, query_emb: torch.Tensor, k: int = 5, *, target: Modality = "audio") -> list[Match]:
        """The `k` gallery clips whose `target` embedding scores highest against `query_emb` (D,).

        A video query searches `target="audio"` (clips without sound are left out), an audio
        query `target="video"`; scores are dot products of L2-normalised vectors (cosines).
        """
        if target not in ("video", "audio"):
            raise ValueError(f"target must be 'video' or 'audio', got {target!r}")
        query = query_emb.detach().float().cpu().reshape(-1)
        if query.shape[0] != self.dim:
            raise ValueError(
                f"query embedding has {query.shape[0]} dimensions, the gallery {self.dim}: "
                "embed the gallery with the same checkpoint as the query"
            )
        if target == "audio":
            rows = self._audio_rows
            gallery = self.embeddings.audio_emb[rows]
        else:
            rows = torch.arange(len(self))
            gallery = self.embeddings.video_emb
        scores = gallery.float() @ query
        top = torch.topk(scores, min(k, len(rows)))
        emb = self.embeddings
        return [
            Match(float(score), emb.paths[row], float(emb.clip_start[row]), float(emb.clip_end[row]))
            for score, row in zip(top.values.tolist(), rows[top.indices].tolist())
        ]


def is_image(path: str | Path) -> bool:
    """True for still-image files (by suffix), which become a clip of one repeated frame."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def media_info(path: str | Path) -> VideoInfo:
    """Length, streams and verdict of an audio or video query file (an image is not media), from the
    probe that judges a corpus's videos (`probe_file`, sound-only files accepted), so a query's length
    is the one its gallery rows were cut from. Raises ValueError for a file with neither stream."""
    info = probe_file(path, audio_alone=True)
    if not info.has_video and not info.has_audio:
        raise ValueError(f"cannot read {path} as audio or video: {info.reason}")
    return info


def query_window(path: str | Path, clip_duration: float) -> tuple[float, float]:
    """The centre clip of a file, chosen as the embedding sampler chooses gallery clips. A file the
    probe refuses has none: DecodeError with the probe's reason, as the decoder reports a bad file."""
    info = media_info(path)
    if not info.ok:
        raise DecodeError(f"{path}: {info.reason}")
    window = make_sampler("constant", clip_duration).sample(info.duration, seed=0, epoch=0, index=0, item=0)
    return window[0].start, window[0].end


def decode_query(path: str | Path, cfg: ModelConfig, modality: Modality) -> DecodedClip:
    """The centre clip of a media file as the model's clips are decoded (frames or sound only)."""
    start, end = query_window(path, cfg.clip_duration)
    return input_pipeline(cfg).decode(path, start, end, with_video=modality == "video",
                                      with_audio=modality == "audio")


def image_frames(path: str | Path, num_frames: int) -> torch.Tensor:
    """A still image as a clip: (num_frames, H, W, 3) uint8, the same frame repeated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"query image not found: {path}")
    with Image.open(path) as image:
        pixels = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
        height, width = image.height, image.width
    frame = pixels.reshape(height, width, 3)
    return frame.unsqueeze(0).expand(num_frames, -1, -1, -1).contiguous()


def video_transform(cfg: ModelConfig) -> VideoTransform:
    """The evaluation frame transform, built as `ClipDataset(train=False)` builds it."""
    return input_pipeline(cfg).video_transform()


def audio_transform(cfg: ModelConfig) -> AudioTransform:
    """The evaluation spectrogram transform, built as `ClipDataset(train=False)` builds it."""
    return input_pipeline(cfg).audio_transform()


def query_frames(path: str | Path, cfg: ModelConfig) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames of a video query: an image repeated, or a video's centre clip."""
    if is_image(path):
        return image_frames(path, cfg.num_frames)
    if not Path(path).is_file():
        raise FileNotFoundError(f"query file not found: {path}")
    return decode_query(path, cfg, "video").frames


def query_audio(path: str | Path, cfg: ModelConfig) -> torch.Tensor:
    """(N,) mono waveform of an audio query: the sound of an audio or video file's centre clip."""
    if is_image(path):
        raise ValueError(f"{path} is an image: an audio query needs an audio or video file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"query file not found: {path}")
    clip = decode_query(path, cfg, "audio")
    if not clip.has_audio:
        raise ValueError(f"{path} has no audio stream to use as an audio query")
    return clip.audio


@torch.no_grad()
def embed_query(model: AVModel, path: str | Path, modality: Modality = "video") -> torch.Tensor:
    """The (D,) embedding of a query file in `modality`: frames (image or video) or sound."""
    device = next(model.parameters()).device
    cfg = model.config
    model.eval()
    if modality == "video":
        clip = video_transform(cfg)(query_frames(path, cfg))
        return model.embed_video(clip.unsqueeze(0).to(device))[0].float().cpu()
    if modality == "audio":
        spec = audio_transform(cfg)(query_audio(path, cfg))
        return model.embed_audio(spec.unsqueeze(0).to(device))[0].float().cpu()
    raise ValueError(f"modality must be 'video' or 'audio', got {modality!r}")


def other_modality(modality: Modality) -> Modality:
    """The modality a query of `modality` retrieves."""
    return "audio" if modality == "video" else "video"


def guess_modality(path: str | Path) -> Modality:
    """The query modality a file suggests: frames for images and videos, sound for audio-only files."""
    if is_image(path):
        return "video"
    if not Path(path).is_file():
        raise FileNotFoundError(f"query file not found: {path}")
    return "video" if media_info(path).has_video else "audio"


def open_gallery(gallery: str | Path, model: AVModel, **embed_kwargs: Any) -> RetrievalIndex:
    """An index over an embeddings file (.pt / .safetensors), or over a source (folder, class
    folders, CSV) embedded now with `model`; `embed_kwargs` go to `embed_source`."""
    if Path(gallery).suffix in SUFFIXES:
        index = RetrievalIndex.load(gallery)
        if index.dim != model.config.proj_dim:
            raise ValueError(
                f"{gallery} holds {index.dim}-d embeddings but the checkpoint's are {model.config.proj_dim}-d: "
                "embed the gallery with the same checkpoint"
            )
        return index
    return RetrievalIndex.build(model, gallery, **embed_kwargs)
