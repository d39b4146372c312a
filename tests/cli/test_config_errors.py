"""Wrong settings on the command line: exit code 2, one line naming the key and its range, and no
run folder left behind, for every command that reads a config (pretrain, finetune, demo)."""
from __future__ import annotations

import pytest

from avssl.cli import main

CASES = [  # (command, override, what the error line says)
    ("pretrain", "train.lr=[", "override 'train.lr=[': not valid YAML"),
    ("pretrain", "train.accum_steps=0", "train.accum_steps=0: must be >= 1"),
    ("pretrain", "train.epochs=0", "train.epochs=0: must be >= 1"),
    ("pretrain", "train.epochs=-1", "train.epochs=-1: must be >= 1"),
    ("pretrain", "train.warmup_epochs=-1", "train.warmup_epochs=-1.0: must be >= 0"),
    ("pretrain", "data.clip_duration=0", "data.clip_duration=0.0: must be > 0"),
    ("pretrain", "data.val_fraction=-0.5", "data.val_fraction=-0.5: must be in (0, 1)"),
    ("pretrain", "data.batch_size=0", "data.batch_size=0: must be >= 1"),
    ("pretrain", "train.lr=nan", "train.lr=nan: must be a finite number > 0"),
    ("pretrain", "data.num_workers=-1", "data.num_workers=-1: must be >= 0"),
    ("pretrain", "data.train=", "data.train is not set"),  # found while setting up, after the folder was made
    ("finetune", "head.label_smoothing=1", "head.label_smoothing=1.0: must be in [0, 1)"),
    ("finetune", "data.eval_clips=0", "data.eval_clips=0: must be >= 1"),
    ("finetune", "train.accum_steps=0", "train.accum_steps=0: must be >= 1"),
    ("finetune", "data.train=missing.csv", "missing.csv"),
    ("demo", "corpus.num_classes=0", "corpus.num_classes=0: must be in [1, 8]"),
    ("demo", "pretrain.train.epochs=0", "pretrain.train.epochs=0: must be >= 1"),
]


@pytest.mark.parametrize("command, override, message", CASES)
def test_a_wrong_setting_exits_2_with_one_line_and_leaves_no_run_folder(tmp_path, capsys, command, override,
                                                                          message):
    out = tmp_path / "runs" / "x"
    code = main([command, f"out={out}", "train.device=cpu" if command != "demo" else "seed=0", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"avssl {command}: error: ") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_malformed_config_file_exits_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n\tepochs: 3\n")
    assert main(["pretrain", "-c", str(config), f"out={tmp_path / 'run'}"]) == 2
    assert "c.yaml: not valid YAML at line 2" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_verbose_shows_the_traceback_above_the_one_line(tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    code = main(["-v", "pretrain", f"out={out}", "train.device=cpu", "train.accum_steps=0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("Traceback (most recent call last):")
    assert "ConfigError" in err and "validate_config" in err
    assert err.splitlines()[-1].startswith("avssl pretrain: error: ") and "train.accum_steps=0: must be >= 1" in err
    assert not (tmp_path / "runs").exists()
