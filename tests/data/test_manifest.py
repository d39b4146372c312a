"""Manifest reading needs only file names, so these tests use empty files: nothing is decoded."""
import os
from pathlib import Path

import pytest

from avssl.data.corpora.index import VideoIndex
from avssl.data.manifest import ManifestEntry, read_source, scan_folder, write_manifest


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_flat_folder_is_unlabeled_sorted_and_recursive(tmp_path):
    _touch(tmp_path, "b.mp4", "a.MKV", "notes.txt", "deep/er/c.webm", ".hidden/d.mp4", ".e.mp4")
    entries = read_source(tmp_path)
    assert [Path(e.path).relative_to(tmp_path).as_posix() for e in entries] == ["a.MKV", "b.mp4", "deep/er/c.webm"]
    assert all(e.label is None and os.path.isabs(e.path) for e in entries)


def test_class_folders_give_labels(tmp_path):
    _touch(tmp_path, "dog/1.mp4", "dog/2.mp4", "cat/1.avi", "train.csv")
    entries = read_source(str(tmp_path))
    assert [(Path(e.path).name, e.label) for e in entries] == [("1.avi", "cat"), ("1.mp4", "dog"), ("2.mp4", "dog")]


@pytest.mark.parametrize("layout", [
    ("dog/1.mp4", "dog/2.mp4"),  # one sub-folder: not a class layout
    ("dog/1.mp4", "cat/1.mp4", "loose.mp4"),  # a video at the top
    ("dog/1.mp4", "cat/x/1.mp4"),  # a video two levels down
])
def test_other_layouts_are_unlabeled(tmp_path, layout):
    _touch(tmp_path, *layout)
    assert all(e.label is None for e in read_source(tmp_path))


def test_empty_folder_and_missing_source(tmp_path):
    _touch(tmp_path, "readme.txt")
    with pytest.raises(ValueError, match="no video files"):
        read_source(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_source(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="neither a folder"):
        read_source(tmp_path / "readme.txt")


def test_csv_manifest_columns(tmp_path):
    (tmp_path / "m.csv").write_text(
        "path,label,labels,start,end,extra\n"
        "clips/a.mp4,dog,,1.5,4,x\n"
        f"{tmp_path / 'elsewhere.mp4'},,bark; speech ;,,\n"
        "\n"
        "clips/b.mp4,,,,\n")
    a, b, c = read_source(tmp_path / "m.csv")
    assert a == ManifestEntry(str(tmp_path / "clips/a.mp4"), "dog", (), 1.5, 4.0)
    assert b == ManifestEntry(str(tmp_path / "elsewhere.mp4"), None, ("bark", "speech"))
    assert c == ManifestEntry(str(tmp_path / "clips/b.mp4"))


def test_csv_relative_to_its_folder_not_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/m.csv").write_text("path\nv.mp4\n")
    monkeypatch.chdir(tmp_path)
    assert read_source("sub/m.csv")[0].path == str(tmp_path / "sub/v.mp4")


@pytest.mark.parametrize("text, message", [
    ("file,label\na.mp4,x\n", r"'path' column is required; found columns \['file', 'label'\]"),
    ("", r"'path' column is required; found columns \[\]"),
    ("path,start\na.mp4,0\nb.mp4,soon\n", r"m.csv line 3: start must be a number of seconds, got 'soon'"),
    ("path,start,end\na.mp4,-1,2\n", r"line 2: start must be >= 0"),
    ("path,start,end\na.mp4,3,2\n", r"line 2: end \(2.0\) must be after start \(3.0\)"),
    ("path,label\n,dog\n", r"line 2: empty path"),
    ("path\n", r"lists no videos"),
])
def test_csv_errors_name_file_line_and_column(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_source(tmp_path / "m.csv")


def test_list_of_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert read_source(["x.mp4", tmp_path / "y.mkv"]) == [
        ManifestEntry(str(tmp_path / "x.mp4")), ManifestEntry(str(tmp_path / "y.mkv"))]
    _touch(tmp_path, "z.mp4")
    assert read_source(tmp_path / "z.mp4") == [ManifestEntry(str(tmp_path / "z.mp4"))]


def test_write_manifest_round_trips(tmp_path):
    entries = [
        ManifestEntry(str(tmp_path / "data/a.mp4"), label="dog", start=0.25, end=2.0),
        ManifestEntry("/abs/elsewhere/b.mp4", labels=("bark", "speech")),
        ManifestEntry(str(tmp_path / "data/sub/c.mp4")),
    ]
    write_manifest(entries, tmp_path / "data/m.csv")
    text = (tmp_path / "data/m.csv").read_text().splitlines()
    assert text[0] == "path,label,labels,start,end"
    assert text[1].startswith("a.mp4,dog,,0.25,2.0") and text[3].startswith("sub/c.mp4,")
    assert read_source(tmp_path / "data/m.csv") == entries


def test_write_manifest_only_used_columns_and_bad_labels(tmp_path):
    write_manifest([ManifestEntry(str(tmp_path / "a.mp4"))], tmp_path / "m.csv")
    assert (tmp_path / "m.csv").read_text().splitlines() == ["path", "a.mp4"]
    with pytest.raises(ValueError, match="may not contain ';'"):
        write_manifest([ManifestEntry("a.mp4", labels=("a;b",))], tmp_path / "bad.csv")


def test_links_back_up_the_tree_are_skipped_and_labels_kept(tmp_path, caplog):
    _touch(tmp_path, "dog/1.mp4", "dog/2.mp4", "cat/1.mp4")
    os.symlink("..", tmp_path / "dog" / "up")  # without a visited set: each file listed dozens of times
    os.symlink("../..", tmp_path / "cat" / "way_up")  # two loops made os.walk run for minutes
    with caplog.at_level("WARNING", logger="avssl.data.manifest"):
        entries = read_source(tmp_path)
    assert [(Path(e.path).relative_to(tmp_path).as_posix(), e.label) for e in entries] == [
        ("cat/1.mp4", "cat"), ("dog/1.mp4", "dog"), ("dog/2.mp4", "dog")]
    assert "1 link to a folder already listed (e.g. dog/up)" in caplog.text
    assert "1 link to a folder above the one scanned (e.g. cat/way_up)" in caplog.text


def test_linked_class_folders_are_class_folders(tmp_path):
    _touch(tmp_path, "corpus/dog/1.mp4", "elsewhere/cats/1.mp4", "elsewhere/cats/2.mp4")
    os.symlink(tmp_path / "elsewhere" / "cats", tmp_path / "corpus" / "cat")
    entries = read_source(tmp_path / "corpus")
    assert [(Path(e.path).relative_to(tmp_path / "corpus").as_posix(), e.label) for e in entries] == [
        ("cat/1.mp4", "cat"), ("cat/2.mp4", "cat"), ("dog/1.mp4", "dog")]


def test_each_file_is_listed_once_under_its_own_name(tmp_path):
    root = tmp_path / "tree"
    _touch(root, "a/1.mp4", "b/2.mp4", "z/3.mp4")
    _touch(tmp_path, "outside/4.mp4")
    os.symlink(root / "z", root / "a" / "also_z")  # a second way into z, met before z itself
    os.symlink(root / "b" / "2.mp4", root / "a" / "two.mp4")
    os.symlink(tmp_path / "outside" / "4.mp4", root / "b" / "four.mp4")
    os.symlink(tmp_path / "outside" / "4.mp4", root / "b" / "vier.mp4")
    os.symlink(tmp_path / "nowhere.mp4", root / "a" / "gone.mp4")
    scan = scan_folder(root)
    assert scan.files == ["a/1.mp4", "b/2.mp4", "b/four.mp4", "z/3.mp4"]
    assert scan.skipped == {"link to a folder already listed": ["a/also_z"], "broken link": ["a/gone.mp4"],
                            "link to a file already listed": ["a/two.mp4", "b/vier.mp4"]}


def test_a_folder_met_again_inside_a_linked_folder_is_read_once(tmp_path):
    _touch(tmp_path, "store/part/1.mp4", "store/2.mp4")
    (tmp_path / "tree").mkdir()
    os.symlink(tmp_path / "store" / "part", tmp_path / "tree" / "a")  # read first, by name
    os.symlink(tmp_path / "store", tmp_path / "tree" / "b")  # holds part/ again
    scan = scan_folder(tmp_path / "tree")
    assert scan.files == ["a/1.mp4", "b/2.mp4"]
    assert scan.skipped == {"folder already listed through a link": ["b/part"]}


def test_corpus_converters_scan_folders_the_same_way(tmp_path):
    _touch(tmp_path, "train/a/v1.mp4", "train/b/v2.mp4")
    os.symlink(tmp_path / "train", tmp_path / "train" / "a" / "loop")
    os.symlink(tmp_path / "train" / "b", tmp_path / "train" / "b_again")
    index = VideoIndex(tmp_path)
    assert index.by_stem == {"v1": [str(tmp_path / "train/a/v1.mp4")], "v2": [str(tmp_path / "train/b/v2.mp4")]}
