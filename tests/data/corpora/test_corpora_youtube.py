"""Kinetics, VGGSound and AudioSet converters on miniature official layouts."""
from __future__ import annotations

import pytest

from avssl.data.corpora import audioset, kinetics, vggsound


def _by_name(report):
    return {m.annotation.name: m.entry for m in report.matched}


def test_kinetics_all_splits(kinetics_layout):
    ann, videos = kinetics_layout
    report = kinetics.convert(ann, videos)
    entries = _by_name(report)
    assert len(report.matched) == 6 and [a.name for a in report.missing] == ["gone_gone_1_000000_000010"]
    assert entries["a_b-c_D1234_000012_000022"].label == "passing American football (in game)"
    assert entries["--33Lscn6sk_000004_000014"].start is None  # trimmed clip
    full = entries["fullVideo01_000030_000040"]
    assert (full.start, full.end, full.label) == (30.0, 40.0, "zumba") and full.path.endswith("fullVideo01.mkv")
    assert entries["testVideo01_000001_000011"].label is None
    counts = report.counts()
    assert {s: c["annotated"] for s, c in counts.items()} == {"test": 1, "train": 4, "val": 2, "all": 7}
    assert counts["train"]["missing"] == 1


def test_kinetics_split_selection_and_check(kinetics_layout):
    ann, videos = kinetics_layout
    val = kinetics.convert([ann / "validate.csv"], videos, split="validate", check=True)
    assert [m.entry.label for m in val.matched] == ["zumba"]
    assert [r.match.annotation.name for r in val.rejected] == ["brokenVid01_000005_000015"]
    assert val.counts()["all"] == {"annotated": 2, "found": 2, "missing": 0, "unreadable": 1, "written": 1}
    assert len(kinetics.convert(ann, videos, split="train").matched) == 3
    with pytest.raises(ValueError, match="splits present: val"):
        kinetics.convert(ann / "validate.csv", videos, split="train")
    with pytest.raises(ValueError, match="must be one of train, val, test"):
        kinetics.read_annotations(ann, split="dev")


def test_kinetics_rejects_other_csvs(tmp_path, write_lines):
    bad = write_lines(tmp_path / "x.csv", ["path,label", "a.mp4,dog"])
    with pytest.raises(ValueError, match="missing column.*youtube_id"):
        kinetics.read_annotations(bad)
    bad = write_lines(tmp_path / "y.csv", ["label,youtube_id,time_start,time_end,split", "dog,abc,four,14,train"])
    with pytest.raises(ValueError, match="y.csv:2"):
        kinetics.read_annotations(bad)
    with pytest.raises(FileNotFoundError):
        kinetics.read_annotations(tmp_path / "none.csv")


def test_vggsound_namings_and_splits(tmp_path, place, write_lines):
    csv_path = write_lines(tmp_path / "vggsound.csv", [
        "---g-f_I2yQ,1,people marching,test",
        '--0PQM4-hqg,30,"cattle, bovinae cowbell",train',
        "-_aBcDeFgHi,0,dog barking,train",
        "notThere_01,10,dog barking,train",
        "fullLength1,20,dog barking,test",
        "hpDY7u8B8hE,5,horse neighing,train",
    ])
    videos = tmp_path / "videos"
    place(videos, "---g-f_I2yQ_000001.mp4")
    place(videos, "--0PQM4-hqg_30_40.mp4")
    place(videos, "-_aBcDeFgHi_000000_000010.mp4")
    place(videos, "fullLength1.mp4")
    place(videos, "hpDY7u8B8hE_5000_15000.mp4")  # milliseconds
    report = vggsound.convert(csv_path, videos)
    entries = _by_name(report)
    assert sorted(entries) == ["---g-f_I2yQ_000001", "--0PQM4-hqg_000030", "-_aBcDeFgHi_000000", "fullLength1_000020",
                               "hpDY7u8B8hE_000005"]
    assert entries["--0PQM4-hqg_000030"].label == "cattle, bovinae cowbell"
    assert all(e.start is None for n, e in entries.items() if n != "fullLength1_000020")
    assert (entries["fullLength1_000020"].start, entries["fullLength1_000020"].end) == (20.0, 30.0)
    assert [a.expected for a in report.missing] == [
        "notThere_01_000010.<video extension> (or the full video notThere_01.<video extension>)"]
    test = vggsound.convert(csv_path, videos, split="test")
    assert sorted(m.annotation.split for m in test.matched) == ["test", "test"]
    with pytest.raises(ValueError, match="must be one of train, test"):
        vggsound.convert(csv_path, videos, split="val")
    bad = write_lines(tmp_path / "bad.csv", ["abc,1,dog", "def,2,cat,train"])
    with pytest.raises(ValueError, match="bad.csv:1: expected 4 fields"):
        vggsound.read_annotations(bad)


def test_audioset_labels_splits_and_namings(audioset_layout):
    ann, index, videos = audioset_layout
    report = audioset.convert(sorted(ann.glob("*_segments.csv")), videos, class_index=index)
    entries = {e.path.rsplit("/", 1)[-1]: e for e in report.entries}
    assert sorted(entries) == ["--4gqARaEJE_0.000_10.000.mp4", "-0RWZT-miFs_420000_430000.mkv",
                               "0-1jeJkxa8A.mp4", "Y--PJHxphWEs.mp4", "evalBroken1_2.500_12.500.mp4"]
    assert entries["Y--PJHxphWEs.mp4"].labels == ("Speech", "Gush") and entries["Y--PJHxphWEs.mp4"].start is None
    full = entries["0-1jeJkxa8A.mp4"]
    assert full.labels == ("Speech", "Male speech, man speaking", "/m/zzzzz")  # unknown id kept as is
    assert (full.start, full.end) == (0.0, 1.0)
    assert all(e.label is None for e in report.entries)
    counts = report.counts()
    assert counts["balanced_train"]["annotated"] == 4 and counts["balanced_train"]["missing"] == 1
    assert counts["eval"] == {"annotated": 2, "found": 2, "missing": 0, "unreadable": 0, "written": 2}


def test_audioset_check_and_ids_without_class_index(audioset_layout):
    ann, _, videos = audioset_layout
    report = audioset.convert(ann, videos, check=True)  # a folder: every *_segments.csv in it
    assert [r.match.annotation.name for r in report.rejected] == ["evalBroken1_2.5_12.5"]
    assert report.counts()["all"] == {"annotated": 6, "found": 5, "missing": 1, "unreadable": 1, "written": 4}
    labels = {m.annotation.name: m.entry.labels for m in report.matched}
    assert labels["--PJHxphWEs_000030_000040"] == ("/m/09x0r", "/t/dd00088")


def test_audioset_bad_inputs(tmp_path, write_lines):
    semicolon = write_lines(tmp_path / "idx.csv", ["index,mid,display_name", '0,/m/1,"a; b"'])
    with pytest.raises(ValueError, match="contains ';'"):
        audioset.read_class_index(semicolon)
    rows = write_lines(tmp_path / "x_segments.csv", ["# a", "abc, 1.0, 2.0"])
    with pytest.raises(ValueError, match="x_segments.csv:2"):
        audioset.read_annotations(rows)
    with pytest.raises(FileNotFoundError, match="class index not found"):
        audioset.read_annotations(rows, class_index=tmp_path / "nope.csv")


def test_annotation_files_with_a_byte_order_mark(tmp_path, write_lines):
    kinetics_csv = write_lines(tmp_path / "train.csv", ["\ufefflabel,youtube_id,time_start,time_end,split",
                                                        "dog,abcdefghijk,1,11,train"])
    assert [(a.label, a.youtube_id, a.segment) for a in kinetics.read_annotations(kinetics_csv)] == [
        ("dog", "abcdefghijk", (1.0, 11.0))]
    vgg_csv = write_lines(tmp_path / "vggsound.csv", ["\ufeffabcdefghijk,1,dog,train"])
    assert [a.name for a in vggsound.read_annotations(vgg_csv)] == ["abcdefghijk_000001"]
