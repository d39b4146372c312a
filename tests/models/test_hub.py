"""Hub conventions: from_pretrained / save_pretrained / model cards / repo ids from a local Hub cache.

No test touches the network: repo ids are resolved from a cache the test lays out the way
huggingface_hub lays it out (models--ORG--NAME/{blobs,snapshots/REV,refs/main}), with HF_HUB_OFFLINE.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch

import avssl
from avssl.models.av_model import AVModel
from avssl.models.classifier import AVClassifier
from avssl.models.factory import WrongModelKind
from avssl.models.hub import is_repo_id

REVISION = "0123456789abcdef0123456789abcdef01234567"


def tiny(**overrides) -> AVModel:
    return avssl.create_model("tiny", embed_dim=32, num_heads=2, depth=1, decoder_dim=32, proj_dim=16, **overrides)


def cache_repo(cache: Path, repo_id: str, folder: Path, revision: str = REVISION, ref: str = "main") -> Path:
    """Put a saved-model folder into a Hub cache as huggingface_hub does: content-addressed blobs,
    snapshot files linking to them, and refs/<ref> naming the revision."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in folder.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(revision)
    return snapshot


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    """An empty Hub cache that huggingface_hub reads, offline (its constants are read at import)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    for name, value in (("HF_HOME", str(tmp_path / "hf")), ("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    assert a.state_dict().keys() == b.state_dict().keys()
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key


def test_loaders_return_eval_mode(tmp_path):
    model = tiny(drop_path=0.5)  # in training mode drop-path makes every forward random
    folder = model.save_pretrained(tmp_path / "m")
    for loaded in (avssl.load_model(folder), AVModel.from_pretrained(folder)):
        assert not any(module.training for module in loaded.modules())
        clip = torch.randn(2, 8, 3, 64, 64)
        assert torch.equal(loaded.embed_video(clip), loaded.embed_video(clip))
        assert_same_weights(model, loaded)
    head = AVClassifier(tiny(), 3, classes=["a", "b", "c"]).save_pretrained(tmp_path / "c")
    classifier = AVClassifier.from_pretrained(head)
    assert isinstance(classifier, AVClassifier) and classifier.classes == ["a", "b", "c"]
    assert not classifier.training
    with pytest.raises(WrongModelKind, match="classifier"):
        AVModel.from_pretrained(head)
    with pytest.raises(WrongModelKind, match="pretraining model"):
        AVClassifier.from_pretrained(folder)


def test_save_pretrained_writes_a_model_card_and_keeps_one_given(tmp_path):
    model = tiny()
    folder = model.save_pretrained(tmp_path / "m")
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: avssl\n")
    assert "feature-extraction" in card and "32" in card and 'avssl.load_model("PATH_OR_REPO_ID")' in card
    (folder / "README.md").write_text("my own card\n")
    model.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "my own card\n"  # as huggingface_hub's mixin: kept
    model.save_pretrained(folder, model_card="given\n")
    assert (folder / "README.md").read_text() == "given\n"
    classifier_card = (AVClassifier(tiny(), 2, classes=["dog", "cat"]).save_pretrained(tmp_path / "c") / "README.md")
    assert "video-classification" in classifier_card.read_text() and "`dog`, `cat`" in classifier_card.read_text()


def test_repo_id_resolves_from_the_hub_cache_offline(tmp_path, offline_cache):
    model = tiny()
    cache_repo(offline_cache, "someone/avssl-tiny", model.save_pretrained(tmp_path / "saved"))
    other = tiny(pos_embed="learned")
    cache_repo(offline_cache, "someone/avssl-tiny", other.save_pretrained(tmp_path / "other"),
               revision="f" * 40, ref="v2")
    loaded = avssl.load_model("someone/avssl-tiny")
    assert_same_weights(model, loaded)
    assert not loaded.training
    assert_same_weights(other, AVModel.from_pretrained("someone/avssl-tiny", revision="v2"))
    assert_same_weights(model, avssl.load_model("someone/avssl-tiny", revision=REVISION))
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE=1.*" + str(offline_cache)):
        avssl.load_model("someone/not-cached")
    with pytest.raises(ValueError, match="revision"):
        avssl.load_model(tmp_path / "saved", revision="main")


def test_a_fresh_process_finds_a_cached_repo_through_hf_home(tmp_path):
    """The user's flow: only environment variables (read when huggingface_hub is imported)."""
    home = tmp_path / "hf"
    model = tiny()
    cache_repo(home / "hub", "someone/avssl-tiny", model.save_pretrained(tmp_path / "saved"))
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_CACHE", None)
    code = ("import avssl, torch; m = avssl.load_model('someone/avssl-tiny'); "
            "print(m.training, float(m.video_proj.weight.sum()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    training, total = out.stdout.split()
    assert training == "False"
    assert float(total) == pytest.approx(float(model.video_proj.weight.detach().sum()), abs=1e-5)


def test_repo_id_form():
    assert is_repo_id("org/name") and is_repo_id("my-org/avssl_tiny.v1")
    assert not is_repo_id("name") and not is_repo_id("a/b/c") and not is_repo_id("org/na--me")


class _FakeApi:
    """Records what a push would send (push_to_hub is wired, never exercised against the Hub)."""

    calls: list[tuple] = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        return type("Commit", (), {"commit_url": f"https://example.invalid/{repo_id}/commit/1"})()


def test_push_to_hub_uploads_the_saved_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub, "HfApi", _FakeApi)
    _FakeApi.calls = []
    tiny().save_pretrained(tmp_path / "m", push_to_hub=True, repo_id="someone/avssl-tiny", private=True)
    assert _FakeApi.calls == [
        ("create_repo", "someone/avssl-tiny", {"repo_type": "model", "private": True, "exist_ok": True}),
        ("upload_folder", "someone/avssl-tiny", ["README.md", "config.json", "model.safetensors"]),
    ]
    _FakeApi.calls = []
    assert tiny().push_to_hub("someone/x").endswith("someone/x/commit/1")
    assert _FakeApi.calls[1][2] == ["README.md", "config.json", "model.safetensors"]
