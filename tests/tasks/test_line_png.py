"""save_line_png: a PNG line chart that draws each series in its colour and skips non-finite points."""
from __future__ import annotations

import math

from PIL import Image

from avssl.tasks.charts import COLORS, save_line_png


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def test_line_png_draws_every_series_in_its_colour(tmp_path) -> None:
    path = save_line_png({"a": [(2, 10.0), (5, 30.0), (10, math.nan)], "b": [(2, 20.0), (5, 25.0)], "none": []},
                         tmp_path / "chart.png", title="t", xlabel="labels per class", ylabel="top-1")
    image = Image.open(path).convert("RGB")
    assert image.size == (640, 420)
    colours = {pixel for _, pixel in image.getcolors(maxcolors=1 << 20)}
    assert _rgb(COLORS[0]) in colours and _rgb(COLORS[1]) in colours and _rgb(COLORS[2]) not in colours
