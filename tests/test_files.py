"""write_json_atomic: whole-or-nothing JSON files with the permissions any new file gets."""
from __future__ import annotations

import json
import os
import stat

import pytest

from avssl.files import new_file_mode, write_json_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    before = os.umask(0o022)
    os.umask(before)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(before)


def _tiny_checkpoint(folder):
    """A real checkpoint (weights, config, trainer state, checksums) of a 2x2 linear layer; its folder."""
    import torch
    from safetensors.torch import save_file

    from avssl.train.checkpoint import Position, save_checkpoint

    class Tiny(torch.nn.Linear):
        def save_pretrained(self, directory):
            directory.mkdir(parents=True, exist_ok=True)
            save_file(self.state_dict(), str(directory / "model.safetensors"))
            (directory / "config.json").write_text("{}")
            return directory

    model = Tiny(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return save_checkpoint(folder, model, optimizer, scheduler, Position(step=1))


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"])
def test_written_files_get_0666_less_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert new_file_mode() == mode
    path = write_json_atomic(tmp_path / "index.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == mode  # was 0600, the temporary file's mode
    path.chmod(0o600)  # replacing a file gives the new one the same mode as a fresh file
    write_json_atomic(path, {"a": 2}, indent=2)
    assert stat.S_IMODE(path.stat().st_mode) == mode and json.loads(path.read_text()) == {"a": 2}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = write_json_atomic(tmp_path / "index.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["index.json"]


def test_checkpoint_index_and_probe_cache_are_readable_by_others(tmp_path, umask, write_test_video, monkeypatch):
    from avssl.data.probe import probe

    umask(0o022)
    monkeypatch.setenv("AVSSL_CACHE_DIR", str(tmp_path / "cache"))
    probe([write_test_video()])
    assert stat.S_IMODE((tmp_path / "cache" / "probe.json").stat().st_mode) == 0o644
    folder = _tiny_checkpoint(tmp_path / "checkpoints")
    for path in [folder.parent / "index.json", folder / "checksums.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_resumed_runs_metrics_and_every_checkpoint_file_keep_the_usual_mode(tmp_path, umask):
    """metrics.jsonl rewritten by a resume, and safetensors weights (which safetensors writes 0600),
    get 0666 less the umask like every other file of a run."""
    from avssl.train.observe import truncate_metrics

    umask(0o022)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"split": "train", "step": s}) + "\n" for s in (1, 2, 3)))
    assert truncate_metrics(metrics, 2) == 1
    assert stat.S_IMODE(metrics.stat().st_mode) == 0o644  # was 0600

    folder = _tiny_checkpoint(tmp_path / "checkpoints")
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}
    assert modes == dict.fromkeys(["model.safetensors", "config.json", "trainer_state.pt", "checksums.json"], 0o644)


def test_a_saved_model_is_readable_by_others(tmp_path, umask):
    from avssl.models.factory import create_model

    umask(0o022)
    folder = create_model("tiny").save_pretrained(tmp_path / "model")
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {
        "model.safetensors": 0o644, "config.json": 0o644, "README.md": 0o644}  # README.md: the model card
