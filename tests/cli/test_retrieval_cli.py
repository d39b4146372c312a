"""`avssl embed`, `avssl retrieve` and `avssl evaluate retrieval` end to end on a tiny checkpoint."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from avssl.cli import main
from avssl.data.decode import decode_clip
from avssl.data.synthetic import make_corpus
from avssl.models.factory import create_model
from avssl.tasks.embed import Embeddings

MATCH_LINE = re.compile(r"^\s*(\d+)\s+([+-]\d\.\d{4})\s+(\S+)\s+\[(\d+\.\d\d)-(\d+\.\d\d) s\]$")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    corpus = make_corpus(root / "corpus", num_classes=2, videos_per_class=3, duration=2.5, seed=2)
    torch.manual_seed(0)
    checkpoint = create_model("tiny").save_pretrained(root / "tiny")
    return {"root": root, "corpus": corpus, "checkpoint": checkpoint}


def matches(stdout: str) -> list[tuple[int, float, str]]:
    found = [MATCH_LINE.match(line) for line in stdout.splitlines()]
    return [(int(m[1]), float(m[2]), m[3]) for m in found if m]


def test_embed_writes_a_gallery(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "gallery.safetensors"
    code = main(["embed", "--checkpoint", str(setup["checkpoint"]), str(setup["corpus"] / "train.csv"),
                 "--out", str(out), "--clips-per-video", "2", "--batch-size", "4", "--num-workers", "0"])
    assert code == 0
    emb = Embeddings.load(out)
    assert len(emb) == 2 * 4 and emb.video_emb.shape[1] == 64 and emb.checkpoint == str(setup["checkpoint"])
    assert f"8 clips (0 without sound), 64-d embeddings -> {out}" in capsys.readouterr().out


def test_retrieve_from_an_image_with_html(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    video = sorted((setup["corpus"] / "circle_low").glob("*.mp4"))[0]
    image = setup["root"] / "query.jpg"
    Image.fromarray(decode_clip(video, 1.0, 1.5, 1).frames[0].numpy()).save(image)
    page = setup["root"] / "page" / "result.html"
    code = main(["retrieve", "--checkpoint", str(setup["checkpoint"]), "--gallery", str(setup["corpus"]),
                 "--query", str(image), "--top-k", "3", "--html", str(page), "--num-workers", "0"])
    assert code == 0
    out = capsys.readouterr().out
    found = matches(out)
    assert [rank for rank, _, _ in found] == [1, 2, 3] and "top 3 audio matches among 6 gallery clips" in out
    assert [score for _, score, _ in found] == sorted((score for _, score, _ in found), reverse=True)
    html = page.read_text()
    assert html.count("<audio controls") == 3 and html.count('<img class="thumb"') == 4  # query + 3 matches
    for src in re.findall(r'src="([^"]+)"', html):
        assert (page.parent / src).is_file(), src


def test_retrieve_with_a_sound_from_a_gallery_file(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gallery = setup["root"] / "gallery.pt"
    assert main(["embed", "--checkpoint", str(setup["checkpoint"]), str(setup["corpus"] / "train.csv"),
                 "--out", str(gallery), "--num-workers", "0"]) == 0
    query = sorted((setup["corpus"] / "square_mid").glob("*.mp4"))[-1]
    capsys.readouterr()
    code = main(["retrieve", "--checkpoint", str(setup["checkpoint"]), "--gallery", str(gallery),
                 "--query", str(query), "--modality", "audio", "--top-k", "10"])
    assert code == 0
    out = capsys.readouterr().out
    assert "(audio); top 4 video matches among 4 gallery clips" in out and len(matches(out)) == 4


def test_evaluate_retrieval_json(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "eval" / "metrics.json"
    code = main(["evaluate", "retrieval", "--checkpoint", str(setup["checkpoint"]), str(setup["corpus"]),
                 "--json", str(out), "--num-workers", "0"])
    assert code == 0
    metrics = json.loads(out.read_text())
    for key in ("v2a_R@1", "v2a_R@5", "v2a_R@10", "v2a_median_rank", "a2v_R@1", "a2v_median_rank"):
        assert key in metrics
    assert metrics["num_clips"] == 6 and metrics["v2a_R@10"] == 100.0 and 1 <= metrics["v2a_median_rank"] <= 6
    assert "v2a_R@1:" in capsys.readouterr().out.replace(" ", "")


def test_evaluate_linear_probe(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = setup["root"] / "probe.json"
    code = main(["evaluate", "linear-probe", "--checkpoint", str(setup["checkpoint"]),
                 "--train", str(setup["corpus"] / "train.csv"), "--val", str(setup["corpus"] / "val.csv"),
                 "--num-workers", "0", "--json", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert (metrics["num_train"], metrics["num_val"], metrics["num_classes"]) == (4, 2, 2)
    assert 0 <= metrics["top1"] <= 100 and metrics["chance_top1"] == 50.0
    assert "top1:" in capsys.readouterr().out.replace(" ", "")


def test_user_errors_exit_2(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    missing = setup["root"] / "nothing"
    assert main(["embed", "--checkpoint", str(missing), str(setup["corpus"]), "--out", "x.pt"]) == 2
    assert f"avssl embed: error: checkpoint not found: {missing}" in capsys.readouterr().err
    assert main(["embed", "--checkpoint", str(setup["checkpoint"]), str(setup["corpus"]), "--out", "x.npy"]) == 2
    assert ".pt or .safetensors" in capsys.readouterr().err
    assert main(["retrieve", "--checkpoint", str(setup["checkpoint"]), "--gallery", str(setup["corpus"]),
                 "--query", str(missing / "q.mp4")]) == 2
    assert "query file not found" in capsys.readouterr().err


def test_damaged_videos_in_a_gallery_are_left_out_and_a_damaged_query_is_one_line(
        setup: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11: an MP4 whose sample table box is renamed has a video stream without a decoder."""
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(setup["root"] / "cache"))
    gallery = setup["root"] / "gallery_with_a_bad_file"
    gallery.mkdir()
    good = sorted((setup["corpus"] / "circle_low").glob("*.mp4"))
    for video in good:
        (gallery / video.name).write_bytes(video.read_bytes())
    damaged = gallery / "damaged.mp4"
    damaged.write_bytes(good[0].read_bytes().replace(b"stbl", b"xtbl", 1))
    code = main(["retrieve", "--checkpoint", str(setup["checkpoint"]), "--gallery", str(gallery),
                 "--query", str(good[0]), "--top-k", "5", "--num-workers", "0"])
    out = capsys.readouterr().out
    assert code == 0 and f"among {len(good)} gallery clips" in out and "damaged.mp4" not in out
    code = main(["retrieve", "--checkpoint", str(setup["checkpoint"]), "--gallery", str(gallery),
                 "--query", str(damaged), "--num-workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == \
        f"avssl retrieve: error: cannot decode the query's frames: {damaged}: no decoder for the video stream"


def test_console_script_help() -> None:
    result = subprocess.run([sys.executable, "-m", "avssl", "evaluate", "retrieval", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--json" in result.stdout
