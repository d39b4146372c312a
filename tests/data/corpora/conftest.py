"""Miniature corpora in their official layouts: one real 1 s MP4 written once, copied under the
names each corpus uses, plus annotation files in each corpus's exact format (with missing and
corrupt entries)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from avssl.data.synthetic import write_video


@pytest.fixture(autouse=True)
def _probe_cache_in_tmp(tmp_path, monkeypatch):
    """Keep the probe cache of --check runs out of the user's home."""
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    """A real 1 s, 32x32, 8 fps H.264 + AAC file."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(8, 32, 32, 3), dtype=np.uint8)
    t = np.arange(16000, dtype=np.float32) / 16000
    audio = 0.3 * np.sin(2 * np.pi * 440 * t)[None]
    return write_video(tmp_path_factory.mktemp("source") / "tiny.mp4", frames, 8, audio)


@pytest.fixture()
def place(tiny_video):
    """place(root, "a/b.mp4") copies the tiny video there; place(root, name, corrupt=True) writes junk."""

    def put(root: Path, relative: str, corrupt: bool = False) -> Path:
        path = Path(root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if corrupt:
            path.write_bytes(b"these bytes are not a video " * 40)
        else:
            shutil.copyfile(tiny_video, path)
        return path

    return put


@pytest.fixture()
def write_lines():
    """write_lines(path, lines, newline) writes an annotation file (official UCF101 lists use CRLF)."""

    def write(path: Path, lines: list[str], newline: str = "\n") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((newline.join(lines) + newline).encode("utf-8"))
        return path

    return write


@pytest.fixture()
def kinetics_layout(tmp_path, place, write_lines):
    """K400-style CSVs (train with an extra column, validate, label-less test) and a partial download."""
    ann = tmp_path / "kinetics400"
    write_lines(ann / "train.csv", [
        "label,youtube_id,time_start,time_end,split,is_cc",
        "abseiling,--33Lscn6sk,4,14,train,0",
        '"passing American football (in game)",a_b-c_D1234,12,22,train,1',
        "abseiling,gone_gone_1,0,10,train,0",
        "zumba,fullVideo01,30,40,train,0",
    ])
    write_lines(ann / "validate.csv", [
        "label,youtube_id,time_start,time_end,split",
        "zumba,valVideo_01,0,10,validate",
        "zumba,brokenVid01,5,15,val",
    ])
    write_lines(ann / "test.csv", ["youtube_id,time_start,time_end,split", "testVideo01,1,11,test"])
    videos = tmp_path / "k400"
    place(videos, "train/abseiling/--33Lscn6sk_000004_000014.mp4")
    place(videos, "train/passing_American_football_(in_game)/a_b-c_D1234_000012_000022.mp4")
    place(videos, "train/zumba/fullVideo01.mkv")  # a full-length download
    place(videos, "val/valVideo_01_000000_000010.mp4")
    place(videos, "val/brokenVid01_000005_000015.mp4", corrupt=True)
    place(videos, "test/testVideo01_000001_000011.webm")
    return ann, videos


@pytest.fixture()
def audioset_layout(tmp_path, place, write_lines):
    ann = tmp_path / "audioset"
    header = [
        "# Segments csv created Sun Mar  5 10:54:25 2017",
        "# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=6",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    write_lines(ann / "balanced_train_segments.csv", header + [
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"',
        '-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw"',
        '0-1jeJkxa8A, 0.000, 1.000, "/m/09x0r,/m/05zppz,/m/zzzzz"',
        'NOTfound123, 10.000, 20.000, "/m/09x0r"',
    ])
    write_lines(ann / "eval_segments.csv", header + [
        '--4gqARaEJE, 0.000, 10.000, "/m/03v3yw"',
        'evalBroken1, 2.500, 12.500, "/m/09x0r"',
    ])
    index = write_lines(ann / "class_labels_indices.csv", [
        "index,mid,display_name",
        '0,/m/09x0r,"Speech"',
        '1,/m/05zppz,"Male speech, man speaking"',
        '2,/m/03v3yw,"Keys jangling"',
        '3,/t/dd00088,"Gush"',
    ])
    videos = tmp_path / "videos"
    place(videos, "balanced/Y--PJHxphWEs.mp4")          # PANNs-style trimmed clip
    place(videos, "balanced/-0RWZT-miFs_420000_430000.mkv")  # milliseconds
    place(videos, "balanced/0-1jeJkxa8A.mp4")           # full-length download
    place(videos, "eval/--4gqARaEJE_0.000_10.000.mp4")  # DCASE-style decimals
    place(videos, "eval/evalBroken1_2.500_12.500.mp4", corrupt=True)
    return ann, index, videos


@pytest.fixture()
def ucf_layout(tmp_path, place, write_lines):
    """ucfTrainTestlist with Windows line ends; the HandStandPushups file-name spelling of the real corpus."""
    lists = tmp_path / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", ["1 ApplyEyeMakeup", "2 HandstandPushups", "3 YoYo"], "\r\n")
    write_lines(lists / "trainlist01.txt", [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 2",
        "YoYo/v_YoYo_g08_c01.avi 3",
    ], "\r\n")
    write_lines(lists / "testlist01.txt", [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "handstandPushups/v_HandStandPushups_g01_c01.avi",
        "YoYo/v_YoYo_g01_c01.avi",
    ], "\r\n")
    write_lines(lists / "trainlist02.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1"], "\r\n")
    write_lines(lists / "testlist02.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"], "\r\n")
    videos = tmp_path / "UCF-101"
    for name in ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                 "HandstandPushups/v_HandStandPushups_g08_c01.avi", "HandstandPushups/v_HandStandPushups_g01_c01.avi",
                 "YoYo/v_YoYo_g08_c01.avi"):
        place(videos, name)
    place(videos, "YoYo/v_YoYo_g01_c01.avi", corrupt=True)
    return lists, videos


@pytest.fixture()
def hmdb_layout(tmp_path, place, write_lines):
    splits = tmp_path / "testTrainMulti_7030_splits"
    for fold, marks in ((1, "120"), (2, "212"), (3, "102")):
        for label in ("brush_hair", "ride_bike"):
            write_lines(splits / f"{label}_test_split{fold}.txt", [
                f"April_09_{label}_u_nm_np1_ba_goo_0.avi {marks[0]} ",
                f"Blonde_{label}_(2)_f_nm_np2_le_med_1.avi {marks[1]} ",
                f"#20_{label}_x_h_nm_np1_fr_goo_2.avi {marks[2]} ",
            ])
    videos = tmp_path / "hmdb51_org"
    for label in ("brush_hair", "ride_bike"):
        place(videos, f"{label}/April_09_{label}_u_nm_np1_ba_goo_0.avi")
        place(videos, f"{label}/#20_{label}_x_h_nm_np1_fr_goo_2.avi")
    place(videos, "ride_bike/Blonde_ride_bike_(2)_f_nm_np2_le_med_1.avi", corrupt=True)
    return splits, videos
