"""Matching annotations to files, the report and the written lists (avssl.data.corpora: annotations, index,
convert, report)."""
from __future__ import annotations

import os

import pytest

from avssl.data.corpora.annotations import Annotation, clip_name
from avssl.data.corpora.convert import convert_annotations
from avssl.data.corpora.index import VideoIndex
from avssl.data.corpora.report import write_outputs
from avssl.data.manifest import read_source


def test_index_skips_hidden_partial_and_non_video_files(tmp_path, place):
    place(tmp_path, "train/a b/clip1.mp4")
    place(tmp_path, "clip2.MKV")
    place(tmp_path, "._clip3.mp4")
    place(tmp_path, ".hidden/clip4.mp4")
    place(tmp_path, "clip5.mp4.part")
    (tmp_path / "notes.txt").write_text("x")
    os.symlink(tmp_path / "train", tmp_path / "train" / "loop")  # a link back up must not recurse forever
    index = VideoIndex(tmp_path)
    assert sorted(index.by_stem) == ["clip1", "clip2"]
    assert index.by_stem["clip1"] == [str(tmp_path / "train" / "a b" / "clip1.mp4")]
    with pytest.raises(FileNotFoundError, match="videos folder not found"):
        VideoIndex(tmp_path / "nope")


def _youtube(youtube_id, start, end, **fields):
    return Annotation(name=clip_name(youtube_id, start, end), split="train", youtube_id=youtube_id,
                      segment=(start, end), **fields)


@pytest.mark.parametrize("name", [
    "a_b-C_d1234_000030_000040.mp4", "a_b-C_d1234_000030.mp4", "a_b-C_d1234_30_40.mkv", "a_b-C_d1234_30.webm",
    "a_b-C_d1234_30.000_40.000.mp4", "a_b-C_d1234_30000_40000.mp4", "Ya_b-C_d1234_30.000_40.000.mp4",
    "Ya_b-C_d1234.mp4",
])
def test_youtube_clip_namings(tmp_path, place, name):
    place(tmp_path, name)
    entry = VideoIndex(tmp_path, {"a_b-C_d1234"}).find(_youtube("a_b-C_d1234", 30.0, 40.0, label="dog"))
    assert entry is not None and entry.path == str(tmp_path / name)
    assert (entry.label, entry.start, entry.end) == ("dog", None, None)


@pytest.mark.parametrize("name", ["a_b-C_d1234_000031_000041.mp4", "a_b-C_d1234_20.mp4", "a_b-C_d12.mp4",
                                  "a_b-C_d1234_30_40_extra.mp4", "Xa_b-C_d1234.mp4", "a_b-C_d1234_x.mp4"])
def test_youtube_names_of_other_clips_do_not_match(tmp_path, place, name):
    place(tmp_path, name)
    assert VideoIndex(tmp_path, {"a_b-C_d1234"}).find(_youtube("a_b-C_d1234", 30.0, 40.0)) is None


def test_full_videos_get_the_window_and_clips_win_over_them(tmp_path, place):
    annotation = _youtube("vid", 1.5, 2.5, label="dog", folders=("dog",))
    place(tmp_path, "vid.mp4")
    full = VideoIndex(tmp_path, {"vid"}).find(annotation)
    assert (full.path, full.start, full.end, full.label) == (str(tmp_path / "vid.mp4"), 1.5, 2.5, "dog")
    place(tmp_path, "cat/vid_1.500_2.500.mp4")
    place(tmp_path, "dog/vid_1.500_2.500.mp4")
    clip = VideoIndex(tmp_path, {"vid"}).find(annotation)
    assert clip.path == str(tmp_path / "dog" / "vid_1.500_2.500.mp4") and clip.start is None
    assert clip_name("vid", 1.5, 2.5) == "vid_1.5_2.5" and clip_name("vid", 4.0, 14.0) == "vid_000004_000014"


def test_stems_and_folder_tie_break(tmp_path, place):
    place(tmp_path, "cat/w.avi")
    place(tmp_path, "dog/w.avi")
    index = VideoIndex(tmp_path)
    same_stem = Annotation(name="w", split="test", label="dog", stems=("w",), folders=("dog",))
    assert index.find(same_stem).path == str(tmp_path / "dog" / "w.avi")
    assert index.find(Annotation(name="z", split="x", stems=("z",))) is None


def _annotations():
    return [
        Annotation(name="good", split="train", label="a", stems=("good",)),
        Annotation(name="bad", split="train", label="a", stems=("bad",)),
        Annotation(name="gone", split="train", label="b", stems=("gone",)),
        Annotation(name="late", split="val", labels=("x", "y"), youtube_id="late", segment=(30.0, 40.0)),
        Annotation(name="early", split="val", labels=("x",), youtube_id="early", segment=(0.0, 1.0)),
    ]


def test_check_rejects_unreadable_files_and_segments_past_the_end(tmp_path, place):
    videos = tmp_path / "videos"
    place(videos, "good.mp4")
    place(videos, "bad.mp4", corrupt=True)
    place(videos, "late.mp4")
    place(videos, "early.webm")
    report = convert_annotations("toy", _annotations(), videos, check=True, probe_cache=tmp_path / "probe.json")
    assert [m.annotation.name for m in report.matched] == ["good", "early"]
    assert [a.name for a in report.missing] == ["gone"]
    reasons = {r.match.annotation.name: r.reason for r in report.rejected}
    assert set(reasons) == {"bad", "late"}
    assert "after the end of the video" in reasons["late"]
    assert reasons["bad"] and "segment" not in reasons["bad"]
    assert report.counts() == {
        "train": {"annotated": 3, "found": 2, "missing": 1, "unreadable": 1, "written": 1},
        "val": {"annotated": 2, "found": 2, "missing": 0, "unreadable": 1, "written": 1},
        "all": {"annotated": 5, "found": 4, "missing": 1, "unreadable": 2, "written": 2},
    }
    summary = report.summary()
    assert summary.splitlines()[0].split() == ["split", "annotated", "found", "missing", "unreadable", "written"]
    assert summary.splitlines()[-1].split() == ["all", "5", "4", "1", "2", "2"]


def test_without_check_every_found_file_is_written(tmp_path, place):
    place(tmp_path, "good.mp4")
    place(tmp_path, "bad.mp4", corrupt=True)
    report = convert_annotations("toy", _annotations(), tmp_path)
    assert sorted(m.annotation.name for m in report.matched) == ["bad", "good"]
    assert not report.rejected and not report.checked
    assert "--check" in report.summary()
    assert report.summary().splitlines()[-2].split()[4] == "-"  # unreadable unknown, not 0


def test_write_outputs_round_trips_through_read_source(tmp_path, place):
    root = tmp_path / "corpus"
    place(root, "videos/good.mp4")
    place(root, "videos/bad.mp4", corrupt=True)
    place(root, "videos/early.mp4")
    out = root / "manifest.csv"
    report = convert_annotations("toy", _annotations(), root / "videos", check=True,
                                 probe_cache=tmp_path / "probe.json")
    outputs = write_outputs(report, out)
    assert outputs.manifest == out
    lines = out.read_text().splitlines()
    assert lines[0] == "path,label,labels,start,end"
    assert lines[1] == "videos/good.mp4,a,,,"  # relative to the manifest's folder
    entries = read_source(out)
    assert entries == report.entries
    assert entries[1].labels == ("x",) and (entries[1].start, entries[1].end) == (0.0, 1.0)

    missing = outputs.missing.read_text().splitlines()
    assert outputs.missing == root / "manifest.missing.txt"
    assert missing[0] == "split\tname\tlabel\texpected"
    assert sorted(line.split("\t")[1] for line in missing[1:]) == ["gone", "late"]
    assert "val\tlate\tx;y\tlate.<video extension> (or the full video late.<video extension>)" in missing
    rejected = outputs.rejected.read_text().splitlines()
    assert rejected[0] == "split\tpath\treason"
    assert rejected[1].startswith(f"train\t{root / 'videos' / 'bad.mp4'}\t") and len(rejected) == 2

    elsewhere = tmp_path / "lists" / "m.csv"  # videos outside the manifest's folder: absolute paths
    unchecked = convert_annotations("toy", _annotations(), root / "videos")
    outputs = write_outputs(unchecked, elsewhere)
    assert outputs.rejected is None and not (tmp_path / "lists" / "m.rejected.txt").exists()
    assert read_source(elsewhere)[0].path == str(root / "videos" / "good.mp4")
    assert elsewhere.read_text().splitlines()[1].startswith(str(root))


def test_a_stale_rejected_list_or_manifest_is_removed(tmp_path, place):
    out = tmp_path / "m.csv"
    out.write_text("path\nold.mp4\n")
    (tmp_path / "m.rejected.txt").write_text("old\n")
    report = convert_annotations("toy", _annotations()[2:3], tmp_path)  # nothing found
    outputs = write_outputs(report, out)
    assert outputs.manifest is None and not out.exists()
    assert not (tmp_path / "m.rejected.txt").exists()
    assert outputs.missing.read_text().count("\n") == 2
