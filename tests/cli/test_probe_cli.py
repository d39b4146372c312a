"""`avssl probe`: files, folders and manifests in, one line per file and a summary out."""
from __future__ import annotations

import json

import pytest

from avssl.cli import main


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_folder_csv_and_file_report_with_reasons(tmp_path, write_test_video, capsys):
    good = write_test_video("videos/good.mp4", duration=2.0, fps=16, audio_rate=8000)
    write_test_video("videos/silent.mkv", audio=False)
    (tmp_path / "videos" / "broken.mp4").write_text("not a video")
    (tmp_path / "list.csv").write_text("path,label\nvideos/good.mp4,a\nvideos/gone.mp4,b\n")
    code = main(["probe", str(tmp_path / "videos"), str(tmp_path / "list.csv"), str(good),
                 "--json", str(tmp_path / "out.json")])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 5  # broken, good, silent, gone (good only once), summary

    def line_for(name):
        path = str(tmp_path / "videos" / name)
        (line,) = [line for line in lines if line.endswith(path) or f"{path}  " in line]
        return line

    assert line_for("good.mp4").split()[:10] == ["ok", "2.00", "s", "16.00", "fps", "64x48", "h264", "8000", "Hz", "x1"]
    assert "no audio" in line_for("silent.mkv") and line_for("silent.mkv").startswith("ok")
    assert line_for("broken.mp4").endswith("not a media file (moov atom not found)")
    assert line_for("gone.mp4").startswith("BAD") and line_for("gone.mp4").endswith("missing file")
    assert lines[-1].startswith("2 ok, 2 bad (") and "4.0 s" in lines[-1]
    stored = json.loads((tmp_path / "out.json").read_text())
    assert [row["ok"] for row in stored] == [False, True, True, False]
    assert stored[1]["duration"] == pytest.approx(2.0)


def test_no_cache_leaves_the_cache_alone(tmp_path, write_test_video, cache_dir, capsys):
    video = write_test_video()
    assert main(["probe", "--no-cache", str(video)]) == 0
    assert not cache_dir.exists()
    assert main(["probe", str(video)]) == 0
    assert (cache_dir / "probe.json").exists()
    assert capsys.readouterr().out.count("1 ok, 0 bad") == 2


def test_nothing_to_probe_is_an_error(tmp_path, capsys):
    assert main(["probe", str(tmp_path / "nowhere"), str(tmp_path / "nor_here.mp4")]) == 2
    assert "none of the paths exist" in capsys.readouterr().err
