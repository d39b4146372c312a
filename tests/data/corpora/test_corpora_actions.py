"""UCF101 and HMDB51 converters on miniature official layouts (three folds each)."""
from __future__ import annotations

import pytest

from avssl.data.corpora import hmdb51, ucf101


def test_ucf101_fold1(ucf_layout):
    lists, videos = ucf_layout
    report = ucf101.convert(lists, videos, fold=1)
    labels = {m.annotation.name: (m.annotation.split, m.entry.label) for m in report.matched}
    assert labels["HandstandPushups/v_HandStandPushups_g08_c01.avi"] == ("train", "HandstandPushups")
    assert labels["handstandPushups/v_HandStandPushups_g01_c01.avi"] == ("test", "HandstandPushups")
    assert labels["YoYo/v_YoYo_g08_c01.avi"] == ("train", "YoYo")
    assert len(report.matched) == 6 and not report.missing
    assert all(e.start is None and e.end is None for e in report.entries)
    checked = ucf101.convert(lists / "classInd.txt", videos, fold=1, split="test", check=True)
    assert [r.match.annotation.name for r in checked.rejected] == ["YoYo/v_YoYo_g01_c01.avi"]
    assert checked.counts()["test"] == {"annotated": 3, "found": 3, "missing": 0, "unreadable": 1, "written": 2}


def test_ucf101_other_folds_and_errors(ucf_layout):
    lists, videos = ucf_layout
    fold2 = ucf101.convert(lists, videos, fold=2)
    assert {(m.annotation.split, m.entry.path.rsplit("/", 1)[-1]) for m in fold2.matched} == {
        ("train", "v_ApplyEyeMakeup_g01_c01.avi"), ("test", "v_ApplyEyeMakeup_g08_c01.avi")}
    with pytest.raises(FileNotFoundError, match="trainlist03.txt"):
        ucf101.convert(lists, videos, fold=3)
    with pytest.raises(ValueError, match="fold must be one of 1, 2, 3"):
        ucf101.read_annotations(lists, fold=4)
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 9\n")
    with pytest.raises(ValueError, match="class number from classInd"):
        ucf101.read_annotations(lists, fold=1)


def test_hmdb51_folds_marks_and_report(hmdb_layout):
    splits, videos = hmdb_layout
    fold1 = hmdb51.convert(splits, videos, fold=1, check=True)
    # mark 0 (the third video) is not part of fold 1 at all
    assert fold1.counts()["all"] == {"annotated": 4, "found": 3, "missing": 1, "unreadable": 1, "written": 2}
    assert {(m.annotation.split, m.entry.label) for m in fold1.matched} == {
        ("train", "brush_hair"), ("train", "ride_bike")}
    assert [a.name for a in fold1.missing] == ["brush_hair/Blonde_brush_hair_(2)_f_nm_np2_le_med_1.avi"]
    assert [r.match.annotation.name for r in fold1.rejected] == ["ride_bike/Blonde_ride_bike_(2)_f_nm_np2_le_med_1.avi"]

    fold3_test = hmdb51.convert(splits / "ride_bike_test_split3.txt", videos, fold=3, split="test")
    assert sorted(m.entry.path.rsplit("/", 1)[-1] for m in fold3_test.matched) == [
        "#20_brush_hair_x_h_nm_np1_fr_goo_2.avi", "#20_ride_bike_x_h_nm_np1_fr_goo_2.avi"]
    assert sorted(m.entry.label for m in fold3_test.matched) == ["brush_hair", "ride_bike"]
    assert fold3_test.counts()["all"]["annotated"] == 2


def test_hmdb51_errors(hmdb_layout, tmp_path):
    splits, videos = hmdb_layout
    with pytest.raises(FileNotFoundError, match="_test_split1.txt"):
        hmdb51.read_annotations(tmp_path)
    (splits / "brush_hair_test_split2.txt").write_text("video.avi 5\n")
    with pytest.raises(ValueError, match=r"brush_hair_test_split2.txt:1: expected"):
        hmdb51.read_annotations(splits, fold=2)
