"""Pseudo-labels: choosing them (threshold, class-balanced top-k, hard / soft, multi-label), their
statistics against a truth file, the student's architecture and weights (`student_plan`), the
student's training set from files and shards (`pseudo_labelled`), and `avssl finetune
data.unlabeled=...` end to end (a teacher, one noisy student, the report; a larger student; shards for
the pool or the labelled clips) on the synthetic corpus with the tiny model."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from avssl.cli import main
from avssl.config import ConfigError, load_config
from avssl.data.datasets import ClipDataset
from avssl.data.interleave import Interleaved
from avssl.data.shard_index import shard_metadata
from avssl.data.shard_writer import write_shards
from avssl.data.shards import ShardDataset
from avssl.models.factory import create_model, load_classifier
from avssl.recipes.finetune import FinetuneConfig, soft_targets
from avssl.recipes.pseudo_label import run_pseudo_label, student_config, student_plan
from avssl.tasks.pseudo_labels import (PseudoLabelConfig, PseudoLabelled, choose_pseudo_labels, pseudo_label_stats,
                                       pseudo_labelled, true_targets)
from avssl.train.observe import read_metrics

PROBS = torch.tensor([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1], [0.2, 0.75, 0.05], [0.4, 0.3, 0.3]])
PATHS = [f"/pool/{k}.mp4" for k in range(5)]
TINY_YAML = Path(__file__).resolve().parents[2] / "avssl" / "configs" / "finetune" / "tiny.yaml"
TINY = dict(num_frames=2, clip_duration=1.0, frame_size=32)


def test_threshold_and_class_balanced_top_k() -> None:
    labels = choose_pseudo_labels(PROBS, PATHS, PseudoLabelConfig(threshold=0.55))
    assert labels.paths == PATHS[:4] and labels.targets.tolist()[3] == [0.0, 1.0, 0.0]
    capped = choose_pseudo_labels(PROBS, PATHS, PseudoLabelConfig(threshold=0.0, top_k=1))
    assert capped.paths == ["/pool/0.mp4", "/pool/3.mp4"]  # the most confident of each predicted class
    soft = choose_pseudo_labels(PROBS, PATHS, PseudoLabelConfig(threshold=0.65, labels="soft"))
    assert soft.paths == ["/pool/0.mp4", "/pool/2.mp4", "/pool/3.mp4"]
    assert torch.equal(soft.targets, PROBS[[0, 2, 3]])


def test_multi_label_pseudo_labels_use_sigmoid_confidences() -> None:
    probs = torch.tensor([[0.9, 0.8], [0.3, 0.45], [0.2, 0.97]])
    labels = choose_pseudo_labels(probs, PATHS[:3], PseudoLabelConfig(threshold=0.5), multi_label=True)
    assert labels.paths == ["/pool/0.mp4", "/pool/2.mp4"]
    assert labels.targets.tolist() == [[1.0, 1.0], [0.0, 1.0]]
    # soft multi-label targets go through the smoothing, linear in y: 0/1 targets as before
    smoothed = soft_targets(torch.tensor([[1.0, 0.0, 0.5]]), 3, 0.3, multi_label=True)
    assert smoothed.tolist()[0] == pytest.approx([0.7, 0.1, 0.4])
    assert soft_targets(torch.tensor([[0.5, 0.5]]), 2, 0.2, multi_label=False).tolist()[0] == pytest.approx([0.5, 0.5])


def test_statistics_count_classes_bin_confidences_and_measure_agreement(tmp_path) -> None:
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("path,label\n/pool/0.mp4,a\n/pool/1.mp4,b\n/pool/2.mp4,a\n/pool/3.mp4,b\n")
    labels = choose_pseudo_labels(PROBS, PATHS, PseudoLabelConfig(threshold=0.55))
    truth = true_targets(str(truth_csv), PATHS, ["a", "b", "c"])
    assert truth[1].tolist() == [True, True, True, True, False]
    stats = pseudo_label_stats(labels, ["a", "b", "c"], truth)
    assert (stats["kept"], stats["count/a"], stats["count/b"], stats["count/c"]) == (4, 3, 1, 0)
    assert stats["agreement_kept"] == 75.0 and stats["agreement_all"] == 75.0  # clip 1 is b, predicted a
    hist = {k: v for k, v in stats.items() if k.startswith("confidence_hist/")}
    assert len(hist) == 10 and sum(hist.values()) == pytest.approx(1.0)
    assert hist["confidence_hist/0.9-1.0"] == pytest.approx(0.2)


def _manifest(path: Path, rows: list[dict[str, str]], root: Path, label: bool = True) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"] if label else ["path"])
        for row in rows:
            writer.writerow([str(root / row["path"])] + ([row["label"]] if label else []))
    return path


def _shards(manifest: Path, out: Path) -> Path:
    """`manifest`'s videos (about 40 KB each) in shards of at most 100 KB."""
    write_shards(manifest, out, shard_size="100KB", shuffle_seed=0, probe_cache=False)
    return out


def _few_labels(corpus: Path, tmp_path: Path, pool_size: int | None = None) -> tuple[list[str], list[str]]:
    """`avssl finetune` arguments for 2 labelled clips per class of the corpus's train.csv, the first
    `pool_size` (default: all) of the rest unlabeled (copies in tmp_path/pool_videos, which a test may
    delete once they are in shards), its val.csv, one epoch on the CPU; and the classes."""
    with (corpus / "train.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_class: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_class.setdefault(row["label"], []).append(row)
    labelled = [r for group in by_class.values() for r in group[:2]]
    unlabeled = [r for r in rows if r not in labelled][:pool_size]
    copies = tmp_path / "pool_videos"
    for row in unlabeled:
        (copies / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(corpus / row["path"], copies / row["path"])
    train = _manifest(tmp_path / "labelled.csv", labelled, corpus)
    pool = _manifest(tmp_path / "unlabeled.csv", unlabeled, copies, label=False)
    _manifest(tmp_path / "unlabeled_truth.csv", unlabeled, copies)  # the pool with its labels: truth, shards
    args = ["finetune", "-c", "tiny", f"data.train={train}", f"data.val={corpus / 'val.csv'}", f"data.unlabeled={pool}",
            "pseudo_label.threshold=0.0", "train.epochs=1", "train.device=cpu", "data.eval_clips=1",
            "data.eval_crops=1", "data.num_workers=0", "train.loggers=[]"]
    return args, list(by_class)


@pytest.mark.slow
def test_finetune_with_unlabeled_clips_runs_a_teacher_and_a_noisy_student(synthetic_corpus, tmp_path) -> None:
    args, classes = _few_labels(synthetic_corpus, tmp_path)
    out = tmp_path / "pl"
    code = main(args + [f"pseudo_label.truth={tmp_path / 'unlabeled_truth.csv'}", "pseudo_label.labels=soft",
                        f"out={out}"])
    assert code == 0
    rounds = read_metrics(out, "pseudo_label")
    assert [r["step"] for r in rounds] == [1, 2]
    first = rounds[0]
    assert first["pool"] == first["kept"] == 16 and sum(first[f"count/{c}"] for c in classes) == 16
    assert first["student_params_M"] == first["teacher_params_M"]  # the teacher's architecture
    assert 0.0 <= first["agreement_kept"] <= 100.0 and "teacher_top1" in rounds[1]
    assert len((out / "pseudo_labels" / "round1.csv").read_text().splitlines()) == 17
    student = read_metrics(out / "round1", "train")
    assert student and (out / "round1" / "eval" / "metrics.json").is_file()
    assert "drop_path: 0.1" in (out / "round1" / "config.yaml").read_text()
    assert "mixup: 0.5" in (out / "round1" / "config.yaml").read_text()
    page = (out / "report.html").read_text()
    assert "Pseudo-labelled clips per class" in page and "circle_low" in page and "<svg" in page


@pytest.fixture
def pretrained(tmp_path) -> Path:
    """Pretrained-model weights of a narrower tiny model (embed_dim 64) to start the teacher from."""
    return create_model("tiny", embed_dim=64).save_pretrained(tmp_path / "pretrained")


def _plan_config(*overrides: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, None, ["model.embed_dim=64", *overrides])


def test_student_plan_keeps_the_teachers_weights_only_while_their_shapes_fit(pretrained, tmp_path) -> None:
    same = student_plan(_plan_config(f"init={pretrained}"))
    assert same.init == str(pretrained) and same.parameters == same.teacher_parameters
    noisier = student_plan(_plan_config(f"init={pretrained}", "pseudo_label.student_model.drop_path=0.3"))
    assert noisier.init == str(pretrained) and noisier.model.drop_path == 0.3
    wider = student_plan(_plan_config(f"init={pretrained}", "pseudo_label.student_model.embed_dim=96"))
    assert wider.init == "none" and wider.model.config_section() == {"name": "tiny", "embed_dim": 96}
    assert wider.parameters > wider.teacher_parameters
    deeper = student_plan(_plan_config("pseudo_label.student_model.depth=3"))  # the teacher from scratch
    assert deeper.init == "none" and (deeper.model.embed_dim, deeper.model.depth) == (64, 3)
    named = student_plan(_plan_config("pseudo_label.student_model={name: tiny, joint_depth: 2}"))
    assert named.model.config_section() == {"name": "tiny", "joint_depth": 2}  # a named size: not the teacher's width
    given = student_plan(_plan_config(f"pseudo_label.student_init={pretrained}"))
    assert given.init == str(pretrained) and given.parameters == given.teacher_parameters
    student = student_config(_plan_config(f"init={pretrained}", "pseudo_label.student_model.embed_dim=96"),
                             tmp_path / "round1", wider)
    assert student.init == "none" and (student.model.embed_dim, student.model.drop_path) == (96, 0.1)


@pytest.mark.parametrize("overrides, message", [
    (["pseudo_label.student_init={init}", "pseudo_label.student_model.embed_dim=96"],
     r"pseudo_label.student_model=\{'embed_dim': 96\} changes the shapes of the weights in pseudo_label.student_init="),
    (["pseudo_label.student_init={init}", "pseudo_label.student_model.name=small"],
     "student_model.name=small cannot: drop one of the two"),
    (["pseudo_label.student_model.num_heads=5"], "embed_dim must be divisible by num_heads"),
])
def test_impossible_students_are_one_line_errors_before_any_training(pretrained, overrides, message) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        student_plan(_plan_config(*(o.format(init=pretrained) for o in overrides)))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("override, message", [
    ("pseudo_label.student_model.dpeth=3", "pseudo_label.student_model.dpeth: unknown model config key; did you "
                                           "mean 'depth'"),
    ("pseudo_label.student_model.name=smal", "pseudo_label.student_model.name: unknown model 'smal'"),
    ("pseudo_label.student_model.depth=-1", "pseudo_label.student_model.depth=-1: must be >= 0"),
    ("pseudo_label.student_init=", "pseudo_label.student_init=''"),
])
def test_student_section_keys_and_ranges_are_checked_when_the_config_loads(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(FinetuneConfig, None, [override])


@pytest.mark.slow
def test_a_larger_student_trains_from_random_weights_beside_a_pretrained_teacher(synthetic_corpus, pretrained,
                                                                                 tmp_path) -> None:
    args, _ = _few_labels(synthetic_corpus, tmp_path, pool_size=4)
    out = tmp_path / "pl"
    assert main(args + [f"init={pretrained}", "pseudo_label.student_model.embed_dim=96", f"out={out}"]) == 0
    assert load_classifier(out / "round0").config.embed_dim == 64
    assert load_classifier(out / "round1").config.embed_dim == 96
    saved = load_config(FinetuneConfig, out / "round1" / "config.yaml")
    assert saved.init == "none" and (saved.model.embed_dim, saved.model.drop_path) == (96, 0.1)
    first, last = read_metrics(out, "pseudo_label")
    assert first["kept"] == 4 and first["student_params_M"] > first["teacher_params_M"] > 0
    assert 0.0 <= last["teacher_top1"] <= 100.0 and read_metrics(out / "round1", "train")
    assert "student_params_M" in (out / "report.html").read_text()


def _epoch(dataset) -> list[dict]:
    """The items of epoch 0 of a training set, read in this process."""
    dataset.set_epoch(0)
    return list(dataset) if isinstance(dataset, Interleaved) else [dataset[k] for k in range(len(dataset))]


@pytest.mark.parametrize("labelled_shards, pool_shards", [(False, True), (True, False), (True, True), (False, False)])
def test_the_students_set_is_the_labelled_clips_and_the_kept_pool_clips_with_their_targets(
        synthetic_corpus, tmp_path, labelled_shards, pool_shards) -> None:
    _few_labels(synthetic_corpus, tmp_path)
    sources = {"labelled": tmp_path / "labelled.csv", "pool": tmp_path / "unlabeled_truth.csv"}
    with sources["pool"].open(newline="") as handle:
        pool_paths = [row["path"] for row in csv.DictReader(handle)]
    probs = torch.rand(len(pool_paths), 4, generator=torch.Generator().manual_seed(0)).softmax(dim=1)
    labels = choose_pseudo_labels(probs, pool_paths, PseudoLabelConfig(threshold=0.0, top_k=1, labels="soft"))
    assert 0 < len(labels.paths) < len(pool_paths)
    labelled = (ShardDataset(_shards(sources["labelled"], tmp_path / "labelled"), seed=1, **TINY) if labelled_shards
                else ClipDataset(sources["labelled"], seed=1, probe_cache=False, **TINY))
    pool = (ShardDataset(_shards(sources["pool"], tmp_path / "pool"), seed=1, **TINY) if pool_shards
            else ClipDataset(labels.source, seed=1, probe_cache=False, **TINY))
    dataset = pseudo_labelled(labelled, pool, labels)
    assert isinstance(dataset, Interleaved if labelled_shards or pool_shards else PseudoLabelled)
    items = _epoch(dataset)
    assert len(items) == len(dataset) == 8 + len(labels.paths)
    targets = dict(zip(labels.paths, labels.targets))
    own = {row["path"]: row["label"] for row in csv.DictReader((tmp_path / "labelled.csv").open())}
    for item in items:
        if item["path"] in targets:
            assert torch.equal(item["label"], targets[item["path"]])
        else:  # a labelled clip, its class one-hot
            assert item["label"].tolist() == [float(c == own[item["path"]]) for c in labelled.classes]
    assert sorted(i["path"] for i in items if i["path"] in targets) == sorted(labels.paths)  # each kept clip once


def test_kept_clips_in_fewer_shards_than_ranks_are_refused_with_what_to_do(synthetic_corpus, tmp_path,
                                                                           monkeypatch) -> None:
    _few_labels(synthetic_corpus, tmp_path)
    pool = ShardDataset(_shards(tmp_path / "unlabeled_truth.csv", tmp_path / "pool"), **TINY)
    first = next(shard_metadata(pool.urls[0]))["path"]
    labels = choose_pseudo_labels(torch.tensor([[0.9, 0.1, 0.0, 0.0]]), [first], PseudoLabelConfig())
    labelled = ClipDataset(tmp_path / "labelled.csv", probe_cache=False, **TINY)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    with pytest.raises(ValueError, match=r"the 1 pseudo-labelled clips lie in 1 of the pool's \d+ shards, fewer than "
                                         r"the 2 ranks: keep more clips"):
        pseudo_labelled(labelled, pool, labels)


def test_multi_label_shards_keep_their_multi_hot_labels_beside_pseudo_labels(synthetic_corpus, tmp_path) -> None:
    with (synthetic_corpus / "train.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("path,labels\n" + "".join(f"{synthetic_corpus / r['path']},{r['label']};any\n"
                                                   for r in rows[:6]))
    pool = [str(synthetic_corpus / r["path"]) for r in rows[6:12]]
    classes = ["any", *sorted({r["label"] for r in rows})]  # the teacher's classes: the pseudo targets' columns
    dataset = ShardDataset(_shards(labelled, tmp_path / "shards"), seed=1, classes=classes, **TINY)
    assert dataset.classes[0] == "any" and dataset.multi_label
    probs = torch.tensor([[0.9, 0.2, 0.6, 0.7, 0.3]] * 3 + [[0.2, 0.1, 0.1, 0.1, 0.1]] * 3)
    labels = choose_pseudo_labels(probs, pool, PseudoLabelConfig(threshold=0.5), multi_label=True)
    items = _epoch(pseudo_labelled(dataset, ClipDataset(labels.source, seed=1, probe_cache=False, **TINY), labels))
    assert len(items) == 6 + 3
    for item in items:
        if item["path"] in pool[:3]:  # the pseudo labels' multi-hot
            assert item["label"].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
        else:  # a labelled clip's own two classes
            assert item["label"][0] == 1.0 and item["label"].sum() == 2.0


def _pseudo_label_run(args: list[str], *overrides: str):
    """`run_pseudo_label` on the tiny recipe with `args` (the CLI's overrides) and `overrides`."""
    return run_pseudo_label(load_config(FinetuneConfig, TINY_YAML, args[3:] + ["data.batch_size=4", *overrides]))


def _round_csv(out: Path) -> dict[str, tuple[str, float, str]]:
    with (out / "pseudo_labels" / "round1.csv").open(newline="") as handle:
        return {r["path"]: (r["labels"], float(r["confidence"]), r["kept"]) for r in csv.DictReader(handle)}


@pytest.mark.slow
def test_a_pool_of_shards_is_pseudo_labelled_as_its_files(synthetic_corpus, tmp_path) -> None:
    args, classes = _few_labels(synthetic_corpus, tmp_path)
    pool_shards = _shards(tmp_path / "unlabeled_truth.csv", tmp_path / "pool")  # written with their true labels
    common = ["pseudo_label.top_k=2", "pseudo_label.labels=soft"]
    files = _pseudo_label_run(args, *common, f"pseudo_label.truth={tmp_path / 'unlabeled_truth.csv'}",
                              f"out={tmp_path / 'files'}")
    shutil.rmtree(tmp_path / "pool_videos")  # from here on the pool is its shards alone
    shards = _pseudo_label_run(args, *common, f"data.unlabeled={pool_shards}", f"pseudo_label.truth={pool_shards}",
                               "data.num_workers=2", f"out={tmp_path / 'shards'}")
    assert files.status == shards.status == "finished"
    by_files, by_shards = (read_metrics(tmp_path / run, "pseudo_label")[0] for run in ("files", "shards"))
    assert 0 < by_shards["kept"] == by_files["kept"] < by_shards["pool"] == 16
    for key in ["kept", "agreement_kept", "agreement_all", *(f"count/{c}" for c in classes)]:
        assert by_shards[key] == by_files[key], key
    for key in (k for k in by_files if k.startswith("confidence_hist/")):
        assert by_shards[key] == pytest.approx(by_files[key]), key
    rows_files, rows_shards = _round_csv(tmp_path / "files"), _round_csv(tmp_path / "shards")
    assert rows_shards.keys() == rows_files.keys()
    for path, (names, confidence, kept) in rows_files.items():
        assert rows_shards[path][::2] == (names, kept) and rows_shards[path][1] == pytest.approx(confidence, abs=1e-3)
    assert shards.fit.position.step == files.fit.position.step == (8 + by_files["kept"]) // 4  # the same student set
    assert "Pseudo-labelled clips per class" in (tmp_path / "shards" / "report.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["files", "shards"])
def test_labelled_shards_train_a_teacher_and_a_student(synthetic_corpus, tmp_path, pool) -> None:
    args, _ = _few_labels(synthetic_corpus, tmp_path)
    labelled = _shards(tmp_path / "labelled.csv", tmp_path / "labelled")
    unlabeled = []
    if pool == "shards":
        unlabeled = [f"data.unlabeled={_shards(tmp_path / 'unlabeled.csv', tmp_path / 'pool')}"]
        shutil.rmtree(tmp_path / "pool_videos")  # the pool is its shards alone
    result = _pseudo_label_run(args, f"data.train={labelled}", *unlabeled, "pseudo_label.top_k=3",
                               f"pseudo_label.truth={tmp_path / 'unlabeled_truth.csv'}", f"out={tmp_path / 'pl'}")
    first = read_metrics(tmp_path / "pl", "pseudo_label")[0]
    assert result.status == "finished" and 0 < first["kept"] <= 12 and first["pool"] == 16
    assert 0.0 <= first["agreement_kept"] <= 100.0
    assert result.fit.position.step == (8 + first["kept"]) // 4  # labelled shards + kept clips, each once
    assert (tmp_path / "pl" / "round1" / "eval" / "metrics.json").is_file()
