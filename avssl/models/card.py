"""Model cards: the README.md that `save_pretrained` writes beside the weights, as the Hub shows it.

A card says what the weights are (kind, size, inputs and their preprocessing, from the config) and
how to load them. Given the run that trained them (`avssl export RUN --format hub` passes it), it
adds the recipe (the run's resolved `config.yaml`), the data it names, and held-out figures: the
validation record of the run's `metrics.jsonl` at the checkpoint's step and, for a fine-tuning run,
the final evaluation in `eval/metrics.json`. Nothing is invented: what is not known is left out.
"""
from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

RUN_CONFIG = "config.yaml"  # the resolved recipe a run folder keeps
RUN_METRICS = "metrics.jsonl"
RUN_EVAL = Path("eval") / "metrics.json"
# the held-out figures a card reports: retrieval recall / ranks, classification accuracy / mAP, chance
_HEADLINE = re.compile(r"(R@\d+|median_rank|top1|top5|mAP|chance)")


def run_of(checkpoint: Path) -> Path | None:
    """The run folder of a checkpoint folder (`RUN/checkpoints/step_N`), or the folder itself when it is
    a run folder; None when neither holds a run's `config.yaml`."""
    for folder in (checkpoint, checkpoint.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder
    return None


def checkpoint_step(checkpoint: Path) -> int | None:
    """The training step of a checkpoint folder named `step_0000123`, else None."""
    match = re.fullmatch(r"step_(\d+)", checkpoint.name)
    return int(match.group(1)) if match else None


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if _HEADLINE.search(k) and isinstance(v, (int, float)) and math.isfinite(v)}


def held_out(run: Path, step: int | None = None) -> dict[str, float]:
    """Headline held-out figures of a run: its last validation record at or before `step` (any step
    when None), then its final evaluation (`eval/metrics.json`) when there is one. Unreadable lines
    are skipped with a warning: a card is never worth failing a save."""
    figures: dict[str, float] = {}
    metrics = run / RUN_METRICS
    if metrics.is_file():
        for number, line in enumerate(metrics.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s line %d is not JSON: left out of the model card", metrics, number)
                continue
            if record.get("split") == "val" and (step is None or record.get("step", math.inf) <= step):
                figures = _numbers(record)
    final = run / RUN_EVAL
    if final.is_file():
        figures.update({f"eval_{k}": v for k, v in _numbers(json.loads(final.read_text())).items()})
    return figures


def _front_matter(classifier: bool) -> str:
    tags = ["avssl", "audio-visual", "self-supervised", "video", "audio"]
    task = "video-classification" if classifier else "feature-extraction"
    return "---\n" + yaml.safe_dump({"library_name": "avssl", "pipeline_tag": task, "tags": tags},
                                     sort_keys=False) + "---\n"


def _model_section(model: Any) -> list[str]:
    cfg = model.config
    classes = getattr(model, "classes", None)
    parameters = sum(p.numel() for p in model.parameters())
    kind = (f"a {len(classes)}-class `AVClassifier` ({model.mode} mode) fine-tuned from avssl encoders"
            if classes is not None else "an `AVModel`: audio-visual encoders pretrained with masked "
            "autoencoding and cross-modal InfoNCE (after CAV-MAE)")
    lines = [
        f"This is {kind}, size `{cfg.name}`, {parameters / 1e6:.2f}M parameters: {cfg.depth} modality-specific "
        f"+ {cfg.joint_depth} joint transformer blocks of width {cfg.embed_dim}, {cfg.num_heads} heads.",
        "",
        "## Inputs",
        f"- video: {cfg.num_frames} frames of {cfg.frame_size}x{cfg.frame_size} (tubelets {tuple(cfg.tubelet)}) "
        f"over {cfg.clip_duration:g} s clips, normalised with mean {tuple(cfg.image_mean)} / std {tuple(cfg.image_std)}",
        f"- audio: mono {cfg.audio_rate} Hz, {cfg.num_mel_bins}-bin log-mel, {cfg.audio_frames} frames at a 10 ms hop, "
        f"normalised as (x - {cfg.fbank_mean:g}) / {cfg.fbank_std:g}",
        "- `avssl.Preprocessor.from_config(model.config)` (or `model.embed(...)`) prepares decoded frames and "
        "waveforms exactly as avssl's own file pipeline does.",
    ]
    if classes is not None:
        lines += ["", "Classes: " + ", ".join(f"`{c}`" for c in classes)]
    return lines


def _usage(model: Any, repo_id: str | None) -> list[str]:
    where = repo_id or "PATH_OR_REPO_ID"
    if getattr(model, "classes", None) is not None:
        load = f'from avssl.models.classifier import AVClassifier\nmodel = AVClassifier.from_pretrained("{where}")'
        use = "logits = model(video=..., audio=...)  # tensors from avssl.Preprocessor"
    else:
        load = f'import avssl\nmodel = avssl.load_model("{where}")  # eval mode'
        use = "embeddings = model.embed(video=frames, audio=waveform, sample_rate=rate)"
    return ["## Use", "```python", load, use, "```"]


def _run_sections(run: Path, step: int | None) -> list[str]:
    text = (run / RUN_CONFIG).read_text()
    recipe = yaml.safe_load(text) or {}
    data = recipe.get("data", {}) if isinstance(recipe, dict) else {}
    lines = ["## Training data"]
    lines += [f"- {split}: `{data[split]}`" for split in ("train", "val", "test") if data.get(split)] or \
        ["- not recorded in the run's config"]
    figures = held_out(run, step)
    if figures:
        at = f" (validation at step {step})" if step is not None else ""
        lines += ["", f"## Held-out results{at}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4g} |" for name, value in figures.items()]
    lines += ["", "## Recipe", f"The run's resolved config (`{RUN_CONFIG}`):", "```yaml", text.rstrip(), "```"]
    return lines


def model_card(model: Any, *, run: Path | None = None, checkpoint: Path | None = None,
               repo_id: str | None = None) -> str:
    """README.md text for `model` (an `AVModel` or `AVClassifier`). `run`: the run folder that trained it
    (recipe, data, held-out figures); `checkpoint`: the checkpoint folder the weights come from (its
    step picks the validation record); `repo_id`: named in the usage example."""
    title = repo_id or f"avssl {model.config.name}"
    lines = [_front_matter(getattr(model, "classes", None) is not None), f"# {title}", "", *_model_section(model), ""]
    lines += _usage(model, repo_id)
    if run is not None:
        lines += ["", *_run_sections(run, checkpoint_step(checkpoint) if checkpoint is not None else None)]
    lines += ["", "Written by avssl's `save_pretrained`."]
    return "\n".join(lines) + "\n"
