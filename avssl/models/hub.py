"""Saved models on the Hugging Face Hub: a repo id is found the way huggingface_hub finds it, and a
saved-model folder is pushed as one commit.

A Hub repo of an avssl model holds exactly what `save_pretrained` writes (`model.safetensors`,
`config.json`, `README.md`): the Hub is a place for the one weights format, not a second format.

    >>> model = avssl.load_model("org/avssl-tiny")     # from the local Hub cache, else downloaded
    >>> model.save_pretrained("out/tiny", push_to_hub=True, repo_id="org/avssl-tiny")

Resolution follows huggingface_hub's own rules, so its environment variables apply: `HF_HOME` /
`HF_HUB_CACHE` say where the cache is (`models--ORG--NAME/snapshots/REV/...`, with `refs/main` naming
the revision of the main branch), and `HF_HUB_OFFLINE=1` reads the cache only, never the network.
huggingface_hub is imported only when a repo id is resolved or a folder is pushed.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

# "org/name" (huggingface_hub's validate_repo_id, with the namespace required: a bare word is far
# more often a mistyped local folder than one of the Hub's few un-namespaced legacy repos)
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# what from_pretrained fetches: the saved-model files, never a training checkpoint's optimizer state
_MODEL_FILES = ("model.safetensors", "config.json", "README.md")


def is_repo_id(name: str) -> bool:
    """Whether `name` has the form of a Hub model repo id ("org/name", no "--" or "..")."""
    return bool(REPO_ID.match(name)) and "--" not in name and ".." not in name and not name.endswith(".git")


def resolve(path_or_repo_id: str | Path, revision: str | None = None) -> Path:
    """A local path as given when it exists; otherwise, for an "org/name" repo id, the local folder of
    that repo's snapshot at `revision` (default: the main branch), from the Hub cache or downloaded
    into it (never with `HF_HUB_OFFLINE=1`). FileNotFoundError naming both readings otherwise."""
    path = Path(path_or_repo_id)
    name = str(path_or_repo_id)
    if path.exists() or not is_repo_id(name):
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to Hub repo ids, and {name} is a local path")
        return path
    from huggingface_hub import constants, errors, snapshot_download

    try:
        folder = snapshot_download(name, revision=revision, allow_patterns=list(_MODEL_FILES))
    except (errors.LocalEntryNotFoundError, errors.HfHubHTTPError) as err:
        where = "reading the cache only (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "from the Hub"
        raise FileNotFoundError(
            f"{name}: no such local path, and not found as a Hub model repo {where} in the cache "
            f"{constants.HF_HUB_CACHE} ({type(err).__name__}). Give a folder written by save_pretrained, a run "
            f"folder, or a repo id cached with `hf download {name}`") from None
    log.info("%s%s: Hub snapshot %s", name, f"@{revision}" if revision else "", folder)
    return Path(folder)


def push_folder(folder: Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload avssl model") -> str:
    """Upload a saved-model folder to the Hub model repo `repo_id` (created when missing) as one commit;
    returns the commit's URL. A `repo_id` without "org/" goes under the token's user, as on the Hub."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                               commit_message=commit_message)
    log.info("pushed %s to %s", folder, commit.commit_url)
    return str(commit.commit_url)
