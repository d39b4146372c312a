"""The input normalisation statistics the models are trained with, defined once.

Plain numbers without torch, so `avssl.models.config` (the model's defaults) and the transforms of
`avssl.data.video` / `avssl.data.audio` read the same values.
"""
from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FBANK_MEAN = -5.081  # AudioSet log-mel statistics used by AST and CAV-MAE
FBANK_STD = 4.4849
