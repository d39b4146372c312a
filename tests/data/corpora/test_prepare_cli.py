"""`avssl prepare` end to end: options, written files, printed summary, user errors."""
from __future__ import annotations

import os
import subprocess
import sys

from avssl.cli import main
from avssl.data.manifest import read_source


def test_prepare_kinetics_with_check(kinetics_layout, tmp_path, capsys):
    ann, videos = kinetics_layout
    out = tmp_path / "out" / "k400.csv"
    code = main(["prepare", "kinetics", "--annotations", str(ann / "train.csv"), str(ann / "validate.csv"),
                 "--videos", str(videos), "--out", str(out), "--check"])
    assert code == 0
    printed = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in printed.splitlines() if line.split()}
    # the 1 s full-length fullVideo01.mkv cannot hold its 30-40 s clip: unreadable for that clip
    assert rows["train"] == ["4", "3", "1", "1", "2"] and rows["val"] == ["2", "2", "0", "1", "1"]
    assert rows["all"] == ["6", "5", "1", "2", "3"]
    assert "gone_gone_1_000000_000010" in printed and "brokenVid01_000005_000015.mp4" in printed
    entries = read_source(out)
    assert sorted(e.label for e in entries) == ["abseiling", "passing American football (in game)", "zumba"]
    assert len((tmp_path / "out" / "k400.missing.txt").read_text().splitlines()) == 2
    rejected = (tmp_path / "out" / "k400.rejected.txt").read_text()
    assert "brokenVid01" in rejected and "fullVideo01.mkv\tannotated segment starts at 30 s" in rejected


def test_prepare_ucf101_fold_and_split(ucf_layout, tmp_path, capsys):
    lists, videos = ucf_layout
    out = tmp_path / "ucf_test2.csv"
    assert main(["prepare", "ucf101", "--annotations", str(lists), "--videos", str(videos),
                 "--out", str(out), "--fold", "2", "--split", "test"]) == 0
    assert [e.label for e in read_source(out)] == ["ApplyEyeMakeup"]
    assert "--check" in capsys.readouterr().out


def test_prepare_audioset_class_names(audioset_layout, tmp_path):
    ann, index, videos = audioset_layout
    out = tmp_path / "eval.csv"
    assert main(["prepare", "audioset", "--annotations", str(ann / "eval_segments.csv"),
                 "--class-index", str(index), "--videos", str(videos), "--out", str(out)]) == 0
    assert [e.labels for e in read_source(out)] == [("Keys jangling",), ("Speech",)]


def test_prepare_user_errors(kinetics_layout, audioset_layout, tmp_path, capsys):
    ann, videos = kinetics_layout
    out = str(tmp_path / "m.csv")
    common = ["--annotations", str(ann), "--videos", str(videos), "--out", out]
    assert main(["prepare", "kinetics", *common, "--fold", "2"]) == 2
    assert "--fold does not apply to kinetics" in capsys.readouterr().err
    assert main(["prepare", "kinetics", *common, "--split", "dev"]) == 2
    assert "must be one of train, val, test" in capsys.readouterr().err
    seg, _, _ = audioset_layout
    assert main(["prepare", "audioset", "--annotations", str(seg), "--videos", str(videos), "--out", out,
                 "--split", "train"]) == 2
    assert "the segments CSV passed decides the split" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["prepare", "kinetics", "--annotations", str(ann), "--videos", str(empty), "--out", out]) == 2
    assert "none of the 7 annotated videos" in capsys.readouterr().err
    assert main(["prepare", "ucf101", "--annotations", "a", "b", "--videos", str(videos), "--out", out]) == 2
    assert "takes one --annotations folder" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_prepare_as_a_process(hmdb_layout, tmp_path):
    splits, videos = hmdb_layout
    out = tmp_path / "hmdb_train1.csv"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from avssl.cli import main; sys.exit(main())", "prepare", "hmdb51",
         "--annotations", str(splits), "--videos", str(videos), "--out", str(out), "--split", "train"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "AVSSL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr
    assert "hmdb51: 2 videos written" in done.stdout
    assert sorted(e.label for e in read_source(out)) == ["brush_hair", "ride_bike"]
