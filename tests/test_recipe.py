"""The training recipe's levers: folds, intensity policy, strong augmentation, schedules over a time budget, EMA."""
from __future__ import annotations

import doctest
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint, read_checkpoint
from core.data import EpochSampler, split_volumes, train_augmentation
from core.data.intensity import standardize, standardize_volumes
from core.data.synthetic import make_synthetic
from core.inference import segment_images
from core.losses import BCEDiceLoss, DeepSupervisionLoss, SelfDistillationLoss
from core.train import build_parser, parse_args
from core.training.config import TrainConfig, cli_fields, flag_of
from core.training.history import read_history
from core.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))  # the study scripts
TINY = {"width": 4, "size": 32, "batch_size": 8, "threads": 1}


def epochs_of(run: Path) -> list[dict]:
    return [e for e in read_history(run / "history.jsonl") if e["event"] == "epoch"]


def test_folds_cover_every_volume_once_and_are_reproducible() -> None:
    ids = [f"p{i:02d}" for i in range(74)]
    vals = [split_volumes(ids, 0.2, seed=0, folds=3, fold=k)[1] for k in range(3)]
    assert sorted(sum(vals, [])) == ids and [len(v) for v in vals] == [25, 25, 24]
    assert vals == [split_volumes(ids, 0.2, seed=0, folds=3, fold=k)[1] for k in range(3)]
    assert vals != [split_volumes(ids, 0.2, seed=1, folds=3, fold=k)[1] for k in range(3)]
    for k in range(3):
        train, val = split_volumes(ids, 0.2, 0, 3, k)
        assert not set(train) & set(val) and len(train) + len(val) == 74
    assert split_volumes(ids, 0.0, 0) == (ids, [])
    with pytest.raises(ValueError, match="fold must be between 0 and 2"):
        split_volumes(ids, 0.2, 0, folds=3, fold=3)


def test_volume_intensity_undoes_a_scanner_gain() -> None:
    volume = make_synthetic(n_volumes=1, slices_per_volume=6, size=64, seed=2).images
    dim = (volume.astype(np.float32) * 0.45).round().astype(np.uint8)  # the same head, another gain
    a, b = standardize(volume, "volume"), standardize(dim, "volume")
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3  # alike after the policy...
    assert np.abs(volume.astype(int) - dim.astype(int)).mean() > 20  # ...not before
    assert (a[volume.max(-1) == 0] == 0).all()  # background stays background
    stacked = standardize_volumes(np.concatenate([volume, dim]), ["a"] * 6 + ["b"] * 6, "volume")
    assert np.array_equal(stacked[:6], a) and np.array_equal(stacked[6:], b)
    with pytest.raises(ValueError, match="unknown intensity policy"):
        standardize(volume, "zscore")


def test_strong_augmentation_changes_channels_independently() -> None:
    image = np.full((32, 32, 3), 120, np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    strong, mild = train_augmentation("strong"), train_augmentation("mild")
    spreads = [np.ptp(strong(image=image, mask=mask)["image"].reshape(-1, 3).mean(0)) for _ in range(40)]
    assert max(spreads) > 20  # channels moved apart
    assert max(np.ptp(mild(image=image, mask=mask)["image"].reshape(-1, 3).mean(0)) for _ in range(40)) < 1


def test_channel_fill_copies_the_source_channel_into_the_others_on_its_share_of_slices() -> None:
    image = np.stack([np.full((32, 32), v, np.uint8) for v in (40, 120, 200)], axis=-1)
    mask = np.zeros((32, 32), np.uint8)
    filled = train_augmentation("mild", seed=0, channel_fill=0.5)
    outs = [filled(image=image, mask=mask)["image"] for _ in range(200)]
    copies = [(o[..., 0] == o[..., 1]).all() or (o[..., 2] == o[..., 1]).all() for o in outs]
    assert 0.35 < np.mean(copies) < 0.65  # about half the slices lose a sequence
    assert all(abs(int(np.median(o[..., 1])) - 120) < 40 for o in outs)  # the source is kept (not 40 or 200)
    plain = train_augmentation("mild", seed=0)
    assert not any((o[..., 0] == o[..., 1]).all() for o in (plain(image=image, mask=mask)["image"] for _ in range(50)))
    assert parse_args(["--channel-fill", "0.3", "--fill-from", "0"]).channel_fill == 0.3


def test_a_fill_channel_the_data_lacks_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from core import train
    assert train.main(["--data", "synthetic", "--epochs", "1", "--width", "4", "--size", "32", "--channel-fill", "0.5",
                       "--fill-from", "3", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: synthetic: --fill-from 3 names no channel of its 3 (0..2)"


def test_every_config_field_is_a_flag_with_help() -> None:
    help_text = build_parser().format_help()
    for f in cli_fields():
        assert flag_of(f) in help_text
    config = parse_args(["--schedule", "cosine", "--warmup", "0.1", "--ema", "0.99", "--intensity", "volume",
                         "--augment", "strong", "--folds", "3", "--fold", "2", "--budget-minutes", "5"])
    assert (config.schedule, config.warmup, config.ema, config.intensity, config.augment, config.folds,
            config.fold, config.budget_minutes) == ("cosine", 0.1, 0.99, "volume", "strong", 3, 2, 5.0)
    with pytest.raises(SystemExit):
        parse_args(["--schedule", "step"])


def test_a_time_budget_ends_with_a_finished_schedule_and_resume_continues_it(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=6, slices_per_volume=8, size=32, seed=1)
    run = tmp_path / "run"
    config = TrainConfig(out=str(run), **TINY, budget_minutes=0.08, schedule="cosine", warmup=0.1, ema=0.9,
                         intensity="volume", augment="strong", folds=3, fold=1, epochs=1)
    summary = Trainer(config, data=data).fit()
    epochs = epochs_of(run)
    assert summary["reason"] == "completed" and len(epochs) > 1  # --epochs 1 is replaced by the budget
    assert 0.079 <= summary["trained_minutes"] < 0.08 + 0.05
    steps = [e for e in read_history(run / "history.jsonl") if e["event"] == "step"]
    lrs = [s["lr"] for s in steps]
    assert max(lrs) > 0.5e-3 and lrs[-1] < 0.1e-3 and lrs[0] < lrs[len(lrs) // 3]  # warm-up, then decay to ~0
    last = read_checkpoint(run / "last.pt")
    assert last["preprocessing"]["intensity"] == "volume" and last["split"]["folds"] == 3
    assert last["ema"]["updates"] == len(steps) and "train_state_dict" in last
    # the saved model is the average, not the raw weights
    assert any(not torch.equal(last["state_dict"][k], last["train_state_dict"][k]) for k in last["state_dict"])
    resumed = Trainer(TrainConfig.from_dict({**config.to_dict(), "resume": True, "budget_minutes": 0.12}),
                      data=data).fit()
    assert resumed["reason"] == "completed" and 0.119 <= resumed["trained_minutes"] < 0.12 + 0.05
    assert len(epochs_of(run)) > len(epochs)
    assert read_checkpoint(run / "last.pt")["ema"]["updates"] > last["ema"]["updates"]


def test_training_on_every_volume_saves_the_latest_model(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=4, slices_per_volume=8, size=32, seed=1)
    run = tmp_path / "all"
    summary = Trainer(TrainConfig(out=str(run), **TINY, epochs=2, val_fraction=0.0, schedule="poly"), data=data).fit()
    assert summary["reason"] == "completed" and summary["best_score"] is None
    best = read_checkpoint(run / "best.pt")
    assert best["epoch"] == 2 and best["split"]["val"] == [] and len(best["split"]["train"]) == 4


def test_inference_applies_the_checkpoint_intensity_policy(tmp_path: Path) -> None:
    data = make_synthetic(n_volumes=6, slices_per_volume=8, size=32, seed=1)
    Trainer(TrainConfig(out=str(tmp_path / "run"), **TINY, epochs=2, intensity="volume"), data=data).fit()
    model, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    pre = meta["preprocessing"]
    assert pre["intensity"] == "volume"
    dim = (make_synthetic(n_volumes=1, slices_per_volume=6, size=48, seed=2).images * 0.5).astype(np.uint8)
    policed = segment_images(model, pre, dim, 4)
    assert np.allclose(policed, segment_images(model, pre | {"intensity": "none"}, standardize(dim, "volume"), 4))
    unpoliced = segment_images(model, pre | {"intensity": "none"}, dim, 4)  # the dim volume as it is
    assert np.abs(policed - unpoliced).max() > 1e-3


def test_area_sampling_draws_large_lesions_more_often() -> None:
    positive = np.array([True] * 10 + [False] * 30)
    areas = np.array([1000] + [10] * 9 + [0] * 30)
    sampler = EpochSampler(positive, 0.3, seed=0, areas=areas)
    draws = np.concatenate([list(sampler) for sampler.epoch in range(50)])
    assert len(sampler) == 19  # as many slices as the positive+empty draw
    counts = np.bincount(draws, minlength=40)
    assert counts[0] > 5 * counts[1:10].mean() and counts[10:].sum() > 0  # by area, but empty slices still come


def test_self_distillation_pulls_shallow_heads_towards_the_deepest() -> None:
    base = DeepSupervisionLoss(BCEDiceLoss())
    target = torch.zeros(2, 8, 8)
    teacher = torch.full((2, 1, 8, 8), 2.0, requires_grad=True)
    student = torch.full((2, 1, 8, 8), -2.0, requires_grad=True)
    loss = SelfDistillationLoss(base, 1.0)([student, teacher], target)
    loss.backward()
    assert student.grad.mean() < 0  # raising the student's logits towards the teacher lowers the loss
    plain = torch.full((2, 1, 8, 8), 2.0, requires_grad=True)
    base([student.detach(), plain], target).backward()
    assert torch.allclose(teacher.grad, plain.grad)  # the teacher gets only its own segmentation gradient


def test_the_nested_post_processing_estimate_never_scores_a_fold_with_a_rule_chosen_on_it() -> None:
    from recipe import nested_rules, nested_score

    # rule "a" is best on patients p1 and p3, "b" on p2; each fold gets the rule the other two prefer
    a, b = '{"hflip": false}', '{"hflip": true}'
    rules = {a: {"p1": 0.9, "p2": 0.1, "p3": 0.5}, b: {"p1": 0.2, "p2": 0.8, "p3": 0.4}}
    folds = {"p1": 0, "p2": 1, "p3": 2}
    estimate = nested_score(rules, folds, nested_rules(rules, folds))
    assert estimate == pytest.approx((0.2 + 0.1 + 0.5) / 3)  # below either rule's own mean
    assert estimate < max(np.mean(list(r.values())) for r in rules.values())
    # a pruned head bound to the flip its deepest head chose per fold gets only rules with that flip
    assert nested_score(rules, folds, nested_rules(rules, folds, {0: True, 1: True, 2: True})) == pytest.approx(
        (0.2 + 0.8 + 0.4) / 3)


def test_averaging_two_models_can_beat_both_and_is_scored_with_nested_rules() -> None:
    from fold_ensemble import averaged, scored

    truth = np.zeros((3, 8, 8), bool)
    truth[1, 2:6, 2:6] = True
    left, right = np.zeros((3, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8)
    left[1, 2:4, 2:6], right[1, 4:6, 2:6] = 255, 255  # each finds half the lesion
    left[1, 6:8, 2:6] = 200  # and marks voxels touching it (one component, so no rule removes them)
    folds = {"a": 0, "b": 1, "c": 2}
    alone = [scored({v: (m, truth) for v in folds}, folds) for m in (left, right)]
    assert alone[0]["best"] == pytest.approx(0.5) and alone[1]["nested"] == pytest.approx(2 / 3)
    mean = averaged([{"a": (left, truth)}, {"a": (right, truth)}])["a"][0]
    assert mean[1, 3, 3] == 128 and mean[1, 7, 3] == 100  # the lesion at 0.50, the false voxels at 0.39
    both = scored({v: (mean, truth) for v in folds}, folds)
    assert both["nested"] == pytest.approx(1.0) and both["folds"] == pytest.approx([1.0] * 3)


def test_the_error_breakdown_counts_missed_and_false_voxels_and_lists_the_worst_patients_first() -> None:
    from recipe import error_lines

    def counts(lesion: int, fp: int, fn: int, fp_empty: int = 0) -> dict[str, int]:
        return {"lesion": lesion, "false_positive": fp, "false_negative": fn, "false_positive_on_empty": fp_empty}
    errors = {"small": counts(10, 0, 10), "mid": counts(100, 20, 10, 20), "big": counts(1000, 80, 0)}
    text = "\n".join(error_lines(errors, worst=2))
    assert "misses 2% of the 1,110 lesion voxels" in text  # (10 + 10 + 0) / 1110
    assert "9% of them, 20% of those on slices without lesion" in text  # 100 / 1110 false; 20 of 100 on empty
    assert "| smallest (1) | 10–10 | 0.000 | 100% |" in text
    worst = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| small |") or line.startswith("| mid |")
             or line.startswith("| big |")]
    assert worst == ["| small", "| mid"]  # Dice 0 first, then 0.865; the best patient is left out


def test_context_slices_stack_neighbours_within_a_volume_and_tie_intensity_per_sequence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import albumentations as A
    from context_slices import tie_intensity_draws, with_context
    from core.data.augmentation import ChannelIntensity

    data = make_synthetic(n_volumes=2, slices_per_volume=3, size=16)
    stacked = with_context(data, 1)
    assert stacked.images.shape[-1] == 9 and stacked.masks is data.masks
    first, second = data.volumes.index(data.volumes[-1]), 1  # the second volume's first slice; a middle one
    np.testing.assert_array_equal(stacked.images[first][..., :3], data.images[first])  # its edge repeats itself
    np.testing.assert_array_equal(stacked.images[second][..., :3], data.images[second - 1])
    np.testing.assert_array_equal(stacked.images[second][..., 6:], data.images[second + 1])

    monkeypatch.setattr(ChannelIntensity, "get_params_dependent_on_data", ChannelIntensity.get_params_dependent_on_data)
    tie_intensity_draws(3)  # undone by monkeypatch after the test
    out = A.Compose([ChannelIntensity(p=1.0)], seed=0)(image=np.tile(stacked.images[second][..., 3:6], 3))["image"]
    np.testing.assert_array_equal(out[..., :3], out[..., 6:])  # one draw per sequence, on every slice
    assert not np.array_equal(out[..., 0], out[..., 1])  # sequences still change independently


def test_each_study_variant_is_judged_against_the_variant_it_changes() -> None:
    from recipe import VARIANTS, base_of, recipe_of

    assert base_of("baseline") is None and base_of("combined") == "baseline" and base_of("ema") == "baseline"
    assert base_of("area_sampling") == "combined" and base_of("area_30min") == "area_sampling"
    assert base_of("gpu_unet") == "gpu" and base_of("batch_dice_30min") == "area_30min"
    assert base_of("area_60min") == "area_30min"  # minutes past 30 are judged against 30
    assert base_of("area_120min") == "area_60min" and base_of("unet_30min") == "area_30min"
    for variant in VARIANTS:  # a base's flags are a strict prefix of the variant's (one thing changed on top), or
        if (base := base_of(variant)) is not None:  # the base is the same recipe with only another budget
            flags, base_flags = VARIANTS[variant][1], VARIANTS[base][1]
            assert (flags[:len(base_flags)] == base_flags and len(flags) > len(base_flags)
                    or recipe_of(variant) == recipe_of(base))


def test_the_study_trains_what_is_missing_and_retrains_kept_folds_only_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import recipe

    monkeypatch.setattr(recipe, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(recipe, "RESULTS", tmp_path / "runs.json")
    recipe.RESULTS.write_text(json.dumps({"coarse/fold0": {}, "coarse/fold1": {}}))
    done = recipe.RUNS / "coarse" / "fold2"
    done.mkdir(parents=True)
    (done / "history.jsonl").write_text(json.dumps({"event": "end", "reason": "completed"}) + "\n")
    assert recipe.pending(["coarse", "sgd"]) == [("sgd", 0), ("sgd", 1), ("sgd", 2)]
    assert recipe.pending(["coarse"], retrain=("coarse",)) == [("coarse", 0), ("coarse", 1)]  # fold 2 is on disk


def test_the_study_scripts_examples_run() -> None:
    import recipe

    result = doctest.testmod(recipe)
    assert result.attempted >= 2 and result.failed == 0


def test_the_architecture_comparison_pairs_folds_and_waits_for_missing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "docs"))
    import build_results

    def run(dice: float, epochs: int) -> dict:
        scores = {"volume_dice_mean": dice, "volume_dice_median": dice, "dice": dice}
        return {"epochs": epochs, "final": {"1": {}, "4": scores, "ens": {}}}
    monkeypatch.setattr(build_results, "CV_SETS", [("5 minutes", ["a", None, "c"])])
    runs = {**{f"a/fold{k}": run(0.8 + 0.01 * k, 30) for k in range(3)},
            **{f"c/fold{k}": run(0.7 + 0.03 * k, 10) for k in range(3)}}
    text = "\n".join(build_results.cross_validated_block(runs))
    assert "| UNet++ without deep supervision | not run at this budget |" in text
    assert "U-Net against UNet++ with deep supervision, fold by fold: +0.080 ± 0.020" in text  # 0.10, 0.08, 0.06
    assert "ahead on 3 of 3 folds, with 3.0x the epochs" in text
    del runs["c/fold2"]
    assert "not all 6 runs are done yet" in "\n".join(build_results.cross_validated_block(runs))
