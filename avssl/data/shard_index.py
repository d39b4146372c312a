"""Where shards are and what they hold: shard sources (a folder written by `avssl shard`, .tar paths,
URLs, brace patterns), their ``index.json``, and the samples' metadata, read without their videos.

A shard given by the caller can be a local file, an http(s) URL, ``pipe:COMMAND`` or any other
scheme webdataset's ``gopen`` knows. ``pipe:COMMAND`` runs COMMAND in a shell and reads the shard
from its output (e.g. ``pipe:aws s3 cp s3://bucket/shard-000000.tar -``): pass it only for commands
you would run yourself. The shard names an ``index.json`` lists are never URLs or commands: they must
be plain file names, resolved beside the index (a shard folder's are opened as local files), so an
index cannot run anything.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tarfile
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from webdataset.gopen import gopen
from webdataset.shardlists import expand_urls

from avssl.data.shard_writer import INDEX_FORMAT, INDEX_NAME

log = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # what an index may list: a plain file name


def _is_url(text: str) -> bool:
    """True for ``scheme:...`` strings webdataset opens (http://, pipe:, s3://, ...), not for local paths."""
    head = text.split(":", 1)[0]
    return ":" in text and len(head) > 1 and head.isalnum()


def is_shard_source(source: str | Path) -> bool:
    """Whether `source` names shards: a folder with an avssl shard index, or .tar file(s) / a URL or
    brace pattern of them."""
    text = str(source)
    if Path(text).is_dir():
        return (Path(text) / INDEX_NAME).is_file()
    return any(url.endswith(".tar") for url in expand_urls(text))


def read_index(location: str | Path) -> dict:
    """The shard index (``index.json``) at a local path or a URL webdataset can open."""
    text = str(location)
    try:
        with (gopen(text, "rb") if _is_url(text) else open(text, "rb")) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{text}: no shard index; write shards with `avssl shard DATA --out DIR` "
                                "or pass the index's location (index=...)") from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{text}: cannot read the shard index: {err}") from err
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ValueError(f"{text} is not an avssl shard index (no \"format\": \"{INDEX_FORMAT}\")")
    for shard in data.get("shards", []):
        _check_shard_name(shard.get("name") if isinstance(shard, dict) else shard, text)
    return data


def _check_shard_name(name: object, index: str) -> None:
    """Refuse an index entry that is not a plain file name: a path, URL or ``pipe:`` command there
    would let the index open other files or run a shell command."""
    if not isinstance(name, str) or not _SHARD_NAME.fullmatch(name):
        raise ValueError(f"{index}: shard name {name!r} is not a plain file name (letters, digits, '_', '.', '-'); "
                         "an index lists the shards beside it, never paths, URLs or pipe: commands")


def resolve_shards(shards: str | Path | Sequence[str | Path], index: str | Path | None = None
                   ) -> tuple[list[str], dict, list[dict]]:
    """(shard URLs, the index, each shard's index entry) for a shard folder, a path / URL / brace pattern
    (``shard-{000000..000009}.tar``, several joined by ``::``) or a list of them. The index is `index`,
    else the folder's, else ``index.json`` beside the first shard."""
    if isinstance(shards, (str, os.PathLike)) and Path(shards).is_dir():
        folder = Path(shards).absolute()  # absolute: gopen opens it as a file whatever the folder's name
        data = read_index(index or folder / INDEX_NAME)
        return [str(folder / s["name"]) for s in data["shards"]], data, list(data["shards"])
    if isinstance(shards, (str, os.PathLike)):
        urls = expand_urls(str(shards))
    else:
        urls = [str(s) for s in shards]
    if not urls:
        raise ValueError("no shards given")
    missing = [u for u in urls if not _is_url(u) and not os.path.isfile(u)]
    if missing:
        raise FileNotFoundError(f"shard not found: {missing[0]}" + (f" (and {len(missing) - 1} more)"
                                                                     if len(missing) > 1 else ""))
    if index is None:
        if urls[0].startswith("pipe:"):
            raise ValueError(f"{urls[0]}: the index cannot be found beside a pipe: shard; pass index=URL")
        index = urls[0].rsplit("/", 1)[0] + "/" + INDEX_NAME if "/" in urls[0] else INDEX_NAME
    data = read_index(index)
    by_name = {s["name"]: s for s in data["shards"]}
    entries = []
    for url in urls:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if name not in by_name:
            raise ValueError(f"{url}: {name} is not one of the {len(by_name)} shards listed in {index}")
        entries.append(by_name[name])
    return urls, data, entries


def shard_metadata(url: str) -> Iterator[dict]:
    """The ``.json`` metadata `avssl shard` wrote for each sample of the shard `url` (its packed
    ``index``, original ``path``, labels, segment), in order, without reading the videos: a local file
    is read by seeking from header to header, a URL or ``pipe:`` is streamed through. An unreadable
    shard or member is logged and skipped, as `ShardDataset` skips it."""
    local = not _is_url(url)
    try:
        with (open(url, "rb") if local else gopen(url, "rb")) as handle, \
                tarfile.open(fileobj=handle, mode="r:" if local else "r|") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".json"):
                    try:
                        yield json.loads(tar.extractfile(member).read())
                    except ValueError as err:
                        log.warning("%s: skipped unreadable metadata %s (%s)", url, member.name, err)
    except (OSError, tarfile.TarError) as err:
        log.warning("%s: skipped unreadable shard (%s: %s)", url, type(err).__name__, err)


def _files(urls: Iterable[str]) -> Iterator[dict]:
    """The metadata of every sample of the shards `urls` that has its ``path`` and ``index``
    (`ShardDataset` skips the others)."""
    for url in urls:
        for meta in shard_metadata(url):
            if isinstance(meta, dict) and "path" in meta and "index" in meta:
                yield meta


def packed_videos_of(urls: Iterable[str], paths: Iterable[str]) -> list[int]:
    """The packed video numbers (json ``index``) of the samples in the shards `urls` that came from
    the files `paths`: what `ShardDataset.only_videos` takes to stream just those files' clips."""
    wanted = {os.path.abspath(p) for p in paths}
    return [int(meta["index"]) for meta in _files(urls) if os.path.abspath(meta["path"]) in wanted]


def labels_by_file(source: str | Path | Sequence[str | Path]) -> dict[str, tuple[str, ...]]:
    """Each packed file's label names (its absolute path -> names; none: unlabeled), from the shards
    `source`: the labels the shards were written with, e.g. as true labels to measure pseudo labels by."""
    return {os.path.abspath(meta["path"]): tuple(meta.get("labels") or ([meta["label"]] if meta.get("label") else []))
            for meta in _files(resolve_shards(source)[0])}
