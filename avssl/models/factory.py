"""One way to build a model, one way to load one.

    >>> import avssl
    >>> model = avssl.create_model("tiny", proj_dim=32)   # a named size, fields overridden
    >>> model.save_pretrained("out/tiny")                  # model.safetensors + config.json
    >>> same = avssl.load_model("out/tiny")                # in eval mode, as transformers / timm load
    >>> hub = avssl.load_model("org/avssl-tiny")           # a Hub repo id (avssl.models.hub)

Every saved model, pretraining `AVModel` or fine-tuned `AVClassifier`, is read by `load` (the format
and where folders are found: `avssl.models.weights`); `load_model`, `load_classifier` and
`load_backbone` are `load` with what the caller expects.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from avssl.models.av_model import AVModel
from avssl.models.classifier import CLASSIFIER_KEY, AVClassifier
from avssl.models.config import MODEL_CONFIGS, ModelConfig, config_from_dict, get_config
from avssl.models.hub import resolve
from avssl.models.weights import CONFIG_FILE, load_weights, read_config, saved_files

log = logging.getLogger(__name__)


def list_models() -> list[str]:
    """Names accepted by `create_model`."""
    return list(MODEL_CONFIGS)


def create_model(name_or_config: str | ModelConfig = "tiny", **overrides: Any) -> AVModel:
    """A freshly initialised `AVModel` of a named size or a `ModelConfig`, with `overrides` applied
    to the config (e.g. `num_frames=16`). An unknown override raises ValueError naming the closest
    valid field."""
    if isinstance(name_or_config, ModelConfig):
        config = dataclasses.replace(name_or_config)
    else:
        config = get_config(name_or_config)
    return AVModel(config_from_dict(overrides, base=config, where="create_model override"))


def build_from_config(values: dict[str, Any]) -> AVModel | AVClassifier:
    """A freshly initialised model of a `config.json`: an `AVClassifier` when it has a "classifier"
    entry, else an `AVModel`."""
    values = dict(values)
    head = values.pop(CLASSIFIER_KEY, None)
    backbone = AVModel(config_from_dict(values))
    if head is None:
        return backbone
    return AVClassifier(backbone, len(head["classes"]), mode=head["mode"], fusion=head["fusion"],
                        dropout=head["dropout"], classes=head["classes"], multi_label=head["multi_label"],
                        time_bins=head.get("time_bins", 0))  # saved before time-binned pooling: the mean


class WrongModelKind(ValueError):
    """A saved model is not the kind the caller asked for (a classifier where encoders were expected,
    or the reverse)."""


_WRONG_KIND = {  # (what was expected, what the folder holds) -> the advice
    (AVModel, AVClassifier): "holds a fine-tuned classifier, not a pretraining model: use "
                             "avssl.models.factory.load_classifier (or avssl.models.factory.load)",
    (AVClassifier, AVModel): "describes a pretraining model, not a classifier: use avssl.load_model, or "
                             "fine-tune it first (avssl finetune)",
}


def load(path: str | Path, map_location: str = "cpu", *, expect: type | None = None,
         revision: str | None = None) -> AVModel | AVClassifier:
    """The model saved at `path` by `save_pretrained`, in eval mode (dropout and drop-path off, as
    transformers' and timm's loaders return models; call `.train()` to train it): a saved-model folder
    (or its model.safetensors), a checkpoint folder, a run folder of `avssl pretrain` / `avssl finetune`
    (its best checkpoint), or a Hub repo id "org/name" at `revision` (`avssl.models.hub.resolve`).

    Reads only safetensors and JSON (never pickle); checkpoints are verified against their checksums
    and every weight must match the config's shapes. `expect` (AVModel or AVClassifier): a ValueError
    when the folder holds the other kind."""
    weights, config_path = saved_files(resolve(path, revision))
    values = read_config(config_path)
    kind = AVClassifier if CLASSIFIER_KEY in values else AVModel
    if expect is not None and kind is not expect:
        raise WrongModelKind(f"{config_path} {_WRONG_KIND[expect, kind]}")
    model = build_from_config(values)
    load_weights(model, weights, map_location, what=f"its config ({model.config.name})")
    if isinstance(model, AVClassifier):
        log.info("loaded a %d-class %s classifier from %s", model.num_classes, model.mode, weights.parent)
    else:
        log.info("loaded %s model (%.1fM parameters) from %s", model.config.name, model.num_parameters() / 1e6,
                 weights)
    return model.to(map_location).eval()


def load_model(path: str | Path, map_location: str = "cpu", *, revision: str | None = None) -> AVModel:
    """An `AVModel`, in eval mode, from a folder written by `save_pretrained` (or its model.safetensors
    path), a run folder of `avssl pretrain` (its best checkpoint) or a Hub repo id. See `load`."""
    return load(path, map_location, expect=AVModel, revision=revision)  # type: ignore[return-value]


def load_classifier(path: str | Path, map_location: str = "cpu", *, revision: str | None = None) -> AVClassifier:
    """An `AVClassifier`, in eval mode, from a folder written by its `save_pretrained`: a fine-tuning
    checkpoint, a fine-tuning run folder (its best checkpoint) or a Hub repo id. See `load`."""
    return load(path, map_location, expect=AVClassifier, revision=revision)  # type: ignore[return-value]


def is_classifier_folder(path: str | Path) -> bool:
    """Whether a saved-model folder holds an `AVClassifier` (rather than a pretraining `AVModel`)."""
    config = Path(path) / CONFIG_FILE
    return config.is_file() and CLASSIFIER_KEY in read_config(config)


def load_backbone(init: str | Path, model: ModelConfig | dict[str, Any] | None = None) -> AVModel:
    """The encoders to fine-tune or probe. init "none": a new model of the `model` config (a recipe's
    `model:` section, or a dict of "name" and changes). Otherwise the pretrained weights at `init`: a
    checkpoint folder, a run folder (its best checkpoint) or a saved-model folder (imported weights),
    with the changes of `model` that keep the weights' shapes (e.g. drop_path) applied; its name is
    then ignored (the weights know their shape)."""
    if isinstance(model, ModelConfig):
        name, overrides = model.name, model.changes()
    else:
        model = model or {}
        name, overrides = model.get("name", "tiny"), {k: v for k, v in model.items() if k != "name"}
    if str(init) in ("", "none"):
        return create_model(name, **overrides)
    try:
        backbone = load_model(init)
    except WrongModelKind:
        raise ValueError(f"init={init} holds a fine-tuned classifier, not pretrained encoders: continue that run "
                         "with train.resume=PATH, or load it with avssl.models.factory.load_classifier") from None
    log.info("encoders from %s (%s)", init, backbone.config.name)
    if not overrides:
        return backbone
    rebuilt = create_model(backbone.config, **overrides)
    try:
        rebuilt.load_state_dict(backbone.state_dict())
    except RuntimeError as err:
        raise ValueError(f"model overrides {overrides} change the shapes of the weights in {init}: {err}") from err
    return rebuilt
