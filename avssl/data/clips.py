"""What ClipDataset and ShardDataset share: an item's label as a tensor, and `ClipMaker`, which turns
one item's video into its model-ready clips.

`ClipMaker` owns the clip sampler, the decoder settings and the video and audio transforms. Every
random draw of an item (clip times, crop, flip, SpecAugment) is keyed by (seed, epoch, index), so the
two datasets give equal items for the same index whether the video is a file or bytes from a shard.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Sequence

import torch

from avssl.data.audio import target_frames
from avssl.data.augment import AugmentConfig, join_phrases
from avssl.data.decode import DecodedClip, decode_clips
from avssl.data.mirror import MirrorLabels
from avssl.data.sampling import ClipInfo, ClipSampler, make_sampler, seed_from
from avssl.data.sync import SyncShift
from avssl.data.pipeline import InputPipeline, report_audio_length
from avssl.data.normalization import FBANK_MEAN, FBANK_STD, IMAGENET_MEAN, IMAGENET_STD
from avssl.data.video import EVAL_CROP_FRACTION, VideoTransform

MAX_CONSECUTIVE_FAILURES = 10


def label_target(indices: Sequence[int], num_classes: int, multi_label: bool) -> torch.Tensor:
    """An item's ``label`` from its class indices: a float32 multi-hot (num_classes,) when
    `multi_label`, else the int64 class index (-1 when there is none)."""
    if multi_label:
        target = torch.zeros(num_classes, dtype=torch.float32)
        target[torch.as_tensor(indices, dtype=torch.int64)] = 1.0
        return target
    return torch.tensor(int(indices[0]) if len(indices) else -1, dtype=torch.int64)


class ClipMaker:
    """Sampler, decoder settings and transforms of a clip dataset; `make_item` builds its items.

    The base of ClipDataset and ShardDataset, which read a video's bytes from a file and from a shard;
    its arguments are the clip options both take:

    - clip shape: ``num_frames`` frames of ``frame_size`` pixels square from windows of
      ``clip_duration`` seconds; ``audio_frames`` (default: ``clip_duration`` rounded up to a multiple
      of 16 frames) is the spectrogram length clips are padded or cut to, ``num_mel_bins`` its height;
    - which windows: ``sampler`` (a name of `make_sampler` or a `ClipSampler`), ``clips_per_video``
      ("constant" and "random_multi"), ``short`` (videos shorter than a clip: "pad" or "skip"), and
      ``seed``: every random draw is keyed by (seed, epoch, index);
    - decoding: ``audio_rate`` (Hz) and ``audio_channel`` (how several channels become mono: "mean",
      or a channel index);
    - transforms: ``train`` (random crop, flip and SpecAugment as ``augment`` says, default
      `AugmentConfig()`; without it the evaluation view, a centre crop of ``eval_crop_fraction`` of the
      resized short side), ``crops`` (evaluation only: that many crops along the long side, so an
      item's ``video`` is (crops, T, 3, S, S); None: one view, (T, 3, S, S)), and the normalisation
      statistics ``image_mean``/``image_std`` and ``fbank_mean``/``fbank_std``;
    - synchronisation: ``sync`` (`avssl.data.sync.SyncShift`, `SyncShift.from_config(model config)`)
      adds to each item ``sync_audio``, its sound moved by a drawn offset (read in the same decoder
      pass) and transformed as ``audio``, and ``sync_offset``, that offset's class (int64).

    ``**avssl.data.pipeline.input_pipeline(config).dataset_kwargs()`` gives the shape, decoding and
    normalisation a model config says. ``epoch`` (0 at first) selects the draws.
    """

    def __init__(self, *, num_frames: int = 8, clip_duration: float = 2.0, frame_size: int = 112,
                 sampler: str | ClipSampler = "random", clips_per_video: int = 1, train: bool = True,
                 audio_rate: int = 16000, num_mel_bins: int = 128, seed: int = 0, short: str = "pad",
                 image_mean: tuple[float, float, float] = IMAGENET_MEAN,
                 image_std: tuple[float, float, float] = IMAGENET_STD,
                 fbank_mean: float = FBANK_MEAN, fbank_std: float = FBANK_STD, augment: AugmentConfig | None = None,
                 audio_frames: int | None = None, audio_channel: int | str = "mean",
                 eval_crop_fraction: float = EVAL_CROP_FRACTION, crops: int | None = None,
                 sync: SyncShift | None = None):
        augment = augment or AugmentConfig()
        if isinstance(sampler, str):
            sampler = make_sampler(sampler, clip_duration, clips_per_video=clips_per_video, short=short)
        self.sampler = sampler
        self.clip_duration = sampler.clip_duration
        if audio_frames is None:
            audio_frames = target_frames(self.clip_duration)
        else:
            report_audio_length(self.clip_duration, audio_frames, audio_rate)
        self.pipeline = InputPipeline(
            num_frames=num_frames, frame_size=frame_size, clip_duration=self.clip_duration, audio_frames=audio_frames,
            audio_rate=audio_rate, num_mel_bins=num_mel_bins, audio_channel=audio_channel,
            eval_crop_fraction=eval_crop_fraction, image_mean=tuple(image_mean), image_std=tuple(image_std),
            fbank_mean=fbank_mean, fbank_std=fbank_std)
        self.num_frames = num_frames
        self.audio_rate = audio_rate
        self.audio_channel = audio_channel
        self.short_side = self.pipeline.short_side
        self.seed = seed
        self.epoch = 0
        self.sync = sync
        if crops is not None and train:
            raise ValueError(f"crops={crops} are evaluation views: pass train=False")
        self.video_transform = (self.pipeline.spatial_crops(crops) if crops is not None
                                else self.pipeline.video_transform(train, augment))
        self.audio_transform = self.pipeline.audio_transform(train, augment)
        self._augment = augment
        self.mirror: MirrorLabels | None = None
        self._mirror_reads_labels = True

    def pair_mirrored_classes(self, classes: Sequence[str], like: MirrorLabels | None = None) -> None:
        """Make a mirrored training clip take its mirror class (`avssl.data.mirror`), as the
        augmentations' ``flip_labels`` / ``flip_pairs`` say, once the dataset knows its `classes`.
        `like`: another dataset's pairing, for clips whose labels come later by file (a
        pseudo-labelled pool): their own labels are not read, they are mirrored only when every class
        has a mirror class, and their items' ``mirrored`` says which to swap. Nothing changes without a
        training flip."""
        transform = self.video_transform
        if not (isinstance(transform, VideoTransform) and transform.train and transform.flip):
            return
        if like is not None:
            self.mirror, self._mirror_reads_labels = like, False
        elif classes:
            self.mirror = MirrorLabels(classes, self._augment.flip_labels, self._augment.flip_pairs)

    def augmentations(self) -> str:
        """The random augmentations of this dataset's items in words ("none" for evaluation data),
        read from the transforms themselves, so a run logs what its clips really get."""
        labels = self.mirror.describe() if self.mirror is not None else ""
        video = [f"{p} ({labels})" if p == "horizontal flip" and labels else p for p in self.video_transform.describe()]
        return join_phrases(video + self.audio_transform.describe())

    def make_item(self, video: str | Path | BinaryIO, *, path: str, duration: float, offset: float,
                  label: torch.Tensor, index: int, item: int) -> dict | list[dict]:
        """Item `index` (number `item` of its video): draw its clips within the segment of `duration`
        seconds that starts `offset` seconds into `video`, decode and transform them.

        `path` names the video in the item. Returns one item dict, or a list of them (one per clip,
        in clip order) when the sampler gives several clips per item.
        """
        clips = self.sampler.sample(duration, seed=self.seed, epoch=self.epoch, index=index, item=item)
        shifts = None if self.sync is None else [
            self.sync.draw(seed=self.seed, epoch=self.epoch, index=index, clip=k) for k in range(len(clips))]
        decoded = decode_clips(video, [(offset + c.start, offset + c.end) for c in clips], self.num_frames,
                               audio_rate=self.audio_rate, short_side=self.short_side,
                               audio_channel=self.audio_channel,
                               audio_shifts=None if shifts is None else [float(self.sync.seconds[s]) for s in shifts])
        generator = torch.Generator().manual_seed(seed_from(self.seed, self.epoch, index))
        out = [self._item(d, c, offset, path, label, index, generator) for d, c in zip(decoded, clips)]
        for entry, decoded_clip, shift in zip(out, decoded, shifts or ()):
            entry["sync_audio"] = self.audio_transform(decoded_clip.shifted_audio, generator)
            entry["sync_offset"] = torch.tensor(shift, dtype=torch.int64)
        return out if len(out) > 1 else out[0]

    def _item(self, decoded: DecodedClip, clip: ClipInfo, offset: float, path: str, label: torch.Tensor,
              index: int, generator: torch.Generator) -> dict:
        extra = {}
        if self.mirror is None:
            video = self.video_transform(decoded.frames, generator)
        else:  # a mirrored clip shows its mirror class; `mirrored` tells a later relabelling to swap too
            swapped = self.mirror.mirror(label if self._mirror_reads_labels else torch.tensor(-1))
            video, mirrored = self.video_transform.transform(decoded.frames, generator, may_flip=swapped is not None)
            label = swapped if mirrored and self._mirror_reads_labels else label
            extra = {"mirrored": mirrored}
        return {
            "video": video,
            "audio": self.audio_transform(decoded.audio, generator),
            "has_audio": torch.tensor(decoded.has_audio),
            "label": label,
            **extra,
            "path": path,
            "clip_start": offset + clip.start,
            "clip_end": offset + clip.end,
            "clip_index": clip.clip_index,
            "index": index,
        }
