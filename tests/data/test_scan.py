"""The scanned corpus: entries with their probe facts and segments, each file probed once, refusals with
reasons, the same judgement for every user (datasets, shard writer, protocol, converters, `avssl probe`)."""
from __future__ import annotations

import pytest

from avssl.data.manifest import ManifestEntry
from avssl.data.scan import scan_entries, scan_source


def test_entries_segments_files_and_rejections(tmp_path, write_test_video):
    good = write_test_video("videos/good.mp4", duration=2.0)
    write_test_video("videos/silent.mp4", duration=2.0, audio=False)
    (tmp_path / "videos" / "broken.mp4").write_text("not a video")
    (tmp_path / "list.csv").write_text("path,label,start,end\n"
                                       "videos/good.mp4,a,0.5,1.5\n"
                                       "videos/good.mp4,b,3.0,4.0\n"  # starts after the 2 s file ends
                                       "videos/silent.mp4,b,,\n"
                                       "videos/broken.mp4,a,,\n"
                                       "videos/gone.mp4,c,,\n")
    corpus = scan_source(tmp_path / "list.csv", probe_cache=False)
    assert corpus.name == str(tmp_path / "list.csv")
    assert [s.entry.label for s in corpus.entries] == ["a", "b", "b", "a", "c"]
    assert [info.path.rsplit("/", 1)[-1] for info in corpus.files] == ["good.mp4", "silent.mp4", "broken.mp4",
                                                                      "gone.mp4"]  # good.mp4 probed once
    first, late, silent, broken, gone = corpus.entries
    assert first.ok and (first.start, first.length) == (0.5, 1.0) and first.info.path == str(good)
    assert silent.ok and silent.length == pytest.approx(2.0) and not silent.info.has_audio
    assert not late.ok and late.info.reason.startswith("annotated segment starts at 3 s, after the end of the video")
    assert broken.info.reason.startswith("not a media file") and gone.info.reason == "missing file"
    assert corpus.usable == [first, silent]
    assert [info.reason.split(" (")[0] for info in corpus.rejected] == [
        "annotated segment starts at 3 s, after the end of the video", "not a media file", "missing file"]
    assert corpus.summary().startswith("2 ok, 3 bad (")
    assert corpus.classes == ["a", "b", "c"] and not corpus.multi_label


def test_multi_label_entries_and_a_name_for_a_list(tmp_path, write_test_video):
    video = str(write_test_video("clip.mp4"))
    corpus = scan_entries([ManifestEntry(video, labels=("x", "y")), ManifestEntry(video, label="z")],
                          probe_cache=False)
    assert corpus.multi_label and corpus.name == "list of 2 entries"
    assert [corpus.labels(s) for s in corpus.entries] == [("x", "y"), ("z",)]
    assert corpus.classes == ["x", "y", "z"] and len(corpus.files) == 1
