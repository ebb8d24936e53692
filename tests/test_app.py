"""Every page of the Streamlit app through ``streamlit.testing.v1.AppTest``, plus the app's helpers."""
from __future__ import annotations

import gzip
import json
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app.browser import outside
from app.checkpoints import load_model
from app.evaluation import recommend
from app.images import agreement, enlarge, overlay
from core.checkpoint import CheckpointError
from core.levels import level_name
from core.losses import LOSSES
from core.outputs import unique_stems, zip_bytes
from core.data.synthetic import make_synthetic
from core.runs import read_run_history
from core.training.config import TrainConfig
from core.training.trainer import Trainer

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
TIMEOUT = 60


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: tiny models run fastest so, and the machine may be busy training."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder holding one finished tiny UNet++ run (``tiny``) trained in-process."""
    runs = tmp_path_factory.mktemp("runs")
    Trainer(TrainConfig(data="synthetic", width=4, size=32, epochs=2, out=str(runs / "tiny"))).fit()
    return runs


@pytest.fixture
def studio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty studio: no runs, no shipped model; training children use one thread."""
    monkeypatch.setenv("UNETPP_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("UNETPP_STUDIO_CHECKPOINT", str(tmp_path / "shipped.pt"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


@pytest.fixture
def with_run(studio: Path, trained: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The studio with the trained ``tiny`` run in its runs folder."""
    monkeypatch.setenv("UNETPP_STUDIO_RUNS", str(trained))
    return trained / "tiny"


def page(name: str | None = None) -> AppTest:
    """Run the app (Home) or one of its pages, and check that nothing raised."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if name:
        at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def by_label(widgets: Iterable, label: str):
    """The widget with this label."""
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget labelled {label!r} among {[w.label for w in widgets]}"
    return matches[0]


def wait_for(at: AppTest, condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Rerun the page every half second until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]


def texts(elements: Iterable) -> str:
    return "\n".join(str(e.value) for e in elements)


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def png(image: np.ndarray, ext: str = ".png") -> bytes:
    return cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


# -- Home --------------------------------------------------------------------------------------
def test_home_on_first_launch_explains_and_links(studio: Path) -> None:
    at = page()
    assert at.title[0].value == "UNet++ Studio"
    assert "not installed yet" in texts(at.info)
    assert len(at.get("plotly_chart")) == 1
    links = [link.proto.page for link in at.get("page_link")]
    assert links.count("Train") == links.count("Compare") == links.count("Segment") == 2  # sidebar and body
    assert "L4 computes 15 of 15 nodes" in texts(at.caption)
    at.segmented_control[0].set_value(2).run()
    assert "L2 computes 6 of 15 nodes" in texts(at.caption)


def test_home_shows_the_shipped_model_and_its_metrics(studio: Path, trained: Path) -> None:
    shutil.copy(trained / "tiny" / "best.pt", studio / "shipped.pt")
    at = page()
    assert not at.info
    assert {m.label for m in at.metric} >= {"Dice", "IoU", "Volume Dice"}
    table = at.dataframe[0].value
    assert list(table["level"]) == ["L1", "L2", "L3", "L4", "ensemble"]
    assert table["parameters"].is_monotonic_increasing


def test_home_falls_back_to_a_runs_model(with_run: Path) -> None:
    at = page()
    assert "not installed yet" in texts(at.info)
    assert "Run tiny" in texts(at.markdown)
    assert len(at.dataframe[0].value) == 5


# -- Train -------------------------------------------------------------------------------------
def test_train_form_offers_every_option(studio: Path) -> None:
    at = page("1_Train")
    assert "No runs yet" in texts(at.info)
    recipe = {"Warm-up share", "Weight average (EMA)", "Self-distillation", "Half-size share"}
    assert {w.label for w in at.number_input} == {"Width", "Input size", "Epochs", "Batch size", "Learning rate"} | recipe
    defaults = TrainConfig()
    assert by_label(at.selectbox, "Schedule").value == defaults.schedule
    assert by_label(at.selectbox, "Intensity").options == ["none", "volume"]
    assert by_label(at.selectbox, "Loss").options == list(LOSSES)
    assert by_label(at.selectbox, "Loss").value == defaults.loss
    assert by_label(at.selectbox, "Slicing plane (NIfTI)").options == ["axial", "coronal", "sagittal"]
    assert by_label(at.number_input, "Weight average (EMA)").value == defaults.ema
    assert by_label(at.selectbox, "Data").options == ["Synthetic demo (no download)",
                                                      "Data folder (its layout is detected)"]
    assert by_label(at.selectbox, "Architecture").options == ["UNet++", "U-Net"]
    assert by_label(at.checkbox, "Deep supervision").value is True
    assert by_label(at.slider, "Loss alpha").value == 0.5
    assert by_label(at.number_input, "Width").value == 8 and by_label(at.number_input, "Input size").value == 64
    assert by_label(at.number_input, "Epochs").value == 10
    assert by_label(at.text_input, "Data folder").disabled  # synthetic data needs no folder
    by_label(at.selectbox, "Data").set_value("Data folder (its layout is detected)").run()
    assert not by_label(at.text_input, "Data folder").disabled
    labels = {w.label for w in at.number_input}
    assert "Minutes" in labels and "Epochs" not in labels  # real data trains to a time budget
    assert by_label(at.number_input, "Width").value == defaults.width  # the recipe's, not the demo's
    assert by_label(at.number_input, "Input size").value == defaults.size


def test_train_rejects_a_wrong_folder_and_a_bad_name(studio: Path) -> None:
    at = page("1_Train")
    by_label(at.selectbox, "Data").set_value("Data folder (its layout is detected)").run()
    by_label(at.text_input, "Data folder").set_value(str(studio / "nowhere"))
    at.button[0].click().run()
    assert f"{studio / 'nowhere'}: no such folder" in texts(at.error)
    by_label(at.text_input, "Data folder").set_value(str(studio))
    at.button[0].click().run()
    assert f"{studio}: not a data folder. Expected " in texts(at.error)  # core.data's words, naming its layouts
    by_label(at.text_input, "Run name").set_value("../escape")
    at.button[0].click().run()
    assert "not a usable run name" in texts(at.error)
    assert not (studio / "runs").exists() or not any((studio / "runs").iterdir())


def test_train_page_runs_a_training_to_the_end(studio: Path, lgg_folder: Path) -> None:
    at = page("1_Train")
    by_label(at.text_input, "Run name").set_value("apptest")
    by_label(at.selectbox, "Data").set_value("Data folder (its layout is detected)").run()
    by_label(at.text_input, "Data folder").set_value(str(lgg_folder))
    by_label(at.number_input, "Width").set_value(4)
    by_label(at.number_input, "Input size").set_value(32)
    by_label(at.number_input, "Minutes").set_value(0.15)
    by_label(at.selectbox, "Schedule").set_value("cosine")
    at.button[0].click().run()
    assert not at.exception and not at.error
    run = studio / "runs" / "apptest"
    config = json.loads((run / "config.json").read_text())
    assert config["budget_minutes"] == 0.15 and config["schedule"] == "cosine"
    assert (run / "pid").is_file()
    assert by_label(at.selectbox, "Run").value == "apptest"
    wait_for(at, lambda: "completed" in texts(at.markdown), "the run to complete")
    assert read_run_history(run)[-1]["reason"] == "completed"
    assert {m.label for m in at.metric} >= {"Validation Dice", "Validation IoU", "Learning rate"}
    assert {"Step loss", "Learning rate", "Loss per epoch", "Validation quality per head"} <= set(chart_titles(at))
    assert len(at.image) == 2  # the validation patient's two slices with a lesion: image · truth · prediction
    assert [b.label for b in at.get("download_button")] == ["best.pt"]
    runs_table = at.dataframe[0].value
    assert list(runs_table["run"]) == ["apptest"] and list(runs_table["data"]) == ["kaggle_3m"]

    # a second run into the same folder is refused with a clear message
    by_label(at.text_input, "Run name").set_value("apptest")
    at.button[0].click().run()
    assert "exists already" in texts(at.error)


def test_train_page_shows_a_run_that_holds_out_no_volumes(studio: Path) -> None:
    """Regression: a run with --val-fraction 0 (as the shipped model's) raised KeyError 'dice' on the Train page."""
    Trainer(TrainConfig(data="synthetic", width=4, size=32, epochs=1, val_fraction=0.0,
                        out=str(studio / "runs" / "all"))).fit()
    at = page("1_Train")
    assert "No validation metrics: this run holds out no volumes" in texts(at.caption)
    assert "No validation samples: the model records no 'val' split" in texts(at.caption)
    assert "Learning rate" in {m.label for m in at.metric}


def test_train_page_stops_and_resumes_a_run(studio: Path) -> None:
    at = page("1_Train")
    by_label(at.text_input, "Run name").set_value("stoppable")
    by_label(at.number_input, "Width").set_value(4)
    by_label(at.number_input, "Input size").set_value(32)
    by_label(at.number_input, "Epochs").set_value(500)
    at.button[0].click().run()
    run = studio / "runs" / "stoppable"
    wait_for(at, lambda: any(e["event"] == "step" for e in read_run_history(run)), "the first step")
    by_label(at.button, "Stop").click().run()
    wait_for(at, lambda: "stopped ·" in texts(at.markdown), "the run to stop")
    assert read_run_history(run)[-1]["reason"] == "stopped" and (run / "last.pt").is_file()
    by_label(at.button, "Resume").click().run()
    assert "training" in texts(at.markdown)
    wait_for(at, lambda: read_run_history(run)[-1]["event"] == "step", "the resumed run's first step")
    by_label(at.button, "Stop").click().run()
    wait_for(at, lambda: "stopped ·" in texts(at.markdown), "the resumed run to stop")
    assert [e["event"] for e in read_run_history(run) if e["event"] in ("start", "resume", "end")] == [
        "start", "end", "resume", "end"]


def test_train_progress_counts_every_session_and_says_where_a_stop_left_off() -> None:
    from app.runview import progress_line, score_name, training_seconds

    def step(epoch: int, n: int, t: float) -> dict:
        return {"event": "step", "epoch": epoch, "step": n, "steps": 20, "loss": 0.5, "lr": 1e-3, "time": t}

    val = {"dice": 0.8, "iou": 0.7, "volume_dice_mean": 0.6}
    events = [{"event": "start", "epoch": 0, "epochs": 10, "steps_per_epoch": 20, "time": 0.0},
              *[step(1, n, n) for n in range(1, 21)], {"event": "epoch", "epoch": 1, "val": val, "time": 21.0},
              *[step(2, n, 21 + n) for n in range(1, 20)], {"event": "end", "reason": "stopped", "epoch": 1, "time": 41.0}]
    fraction, text = progress_line(events, alive=False)
    assert fraction == pytest.approx(0.1)
    assert text.startswith("Stopped after epoch 1 of 10 (41 s of training)")
    assert "epoch 2 had reached step 19/20: Resume trains it again" in text
    assert score_name(events) == "volume Dice"

    events += [{"event": "resume", "epoch": 1, "epochs": 10, "steps_per_epoch": 20, "time": 1000.0},
               step(2, 1, 1001.0), step(2, 2, 1002.0)]
    assert training_seconds(events, alive=True, now=1010.0) == pytest.approx(51.0)  # 41 s before, 10 s since
    fraction, text = progress_line(events, alive=True, now=1010.0)
    assert text.startswith("Epoch 2/10 · step 2/20 · 51 s elapsed")
    assert fraction == pytest.approx(0.11)


def test_train_progress_of_a_time_budget_run_is_the_share_of_its_minutes() -> None:
    from app.runview import progress_line
    from core.runs import progress

    start = {"event": "start", "epoch": 0, "epochs": 50, "steps_per_epoch": 20, "budget_minutes": 2.0,
             "trained_seconds": 0.0, "time": 0.0}
    events = [start, *[{"event": "step", "epoch": 1, "step": n, "steps": 20, "loss": 0.5, "lr": 1e-3, "time": 3.0 * n}
                       for n in range(1, 11)]]
    fraction, text = progress_line(events, alive=True, now=30.0)
    assert fraction == pytest.approx(0.25) and text == "Epoch 1 · step 10/20 · 30 s of 2 min 00 s · about 1 min 30 s left"
    assert progress(events, now=30.0).eta == pytest.approx(90.0)  # the budget's end, not 50 epochs' worth
    events.append({"event": "end", "reason": "completed", "epoch": 4, "time": 120.0})
    assert progress_line(events, alive=False) == (1.0, "0 epochs in the 2 min 00 s budget")


# -- Compare -----------------------------------------------------------------------------------
def test_compare_shows_every_level(with_run: Path) -> None:
    at = page("2_Compare")
    # first, with no evaluation: the checkpoint's stored validation metrics next to latency measured here
    assert "stored in the checkpoint" in texts(at.caption) and "measured on this machine now" in texts(at.caption)
    stored = at.dataframe[0].value
    assert list(stored["level"]) == ["L1", "L2", "L3", "L4", "ensemble"] and (stored["ms per image"] > 0).all()
    assert chart_titles(at) == ["stored validation volume Dice against latency", "Cost against L4"]
    assert "own validation data (stored in the checkpoint" in texts(at.success)
    if "Use L" in texts(at.success):  # a smaller head: its cost, and a speed claim only where one was measured
        assert re.search(r"\d+ % of the FLOPs and \d+ % of the parameters, (\d+\.\d× faster here|not measurably)",
                         texts(at.success)), texts(at.success)

    assert by_label(at.radio, "Evaluation data").value == "The model's validation split"
    next(b for b in at.button if b.label.startswith("Evaluate every level")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[1].value
    assert list(table["level"]) == ["L1", "L2", "L3", "L4", "ensemble"]
    assert (table["ms per image"] > 0).all() and table["parameters"].is_monotonic_increasing
    assert "Results on the model's own held-out validation split (synthetic phantoms)" in texts(at.markdown)
    assert "own validation data, evaluated here" in texts(at.success)
    assert chart_titles(at)[2:] == ["volume Dice against latency", "Cost against L4"]
    captions = image_captions(at)
    assert captions[:2] == ["Input (FLAIR channel)", "Ground truth"]
    assert [c.split(" ·")[0] for c in captions[2:]] == ["L1", "L2", "L3", "L4", "Disagreement"]
    by_label(at.radio, "Evaluation data").set_value("Synthetic phantoms").run()
    assert "192 images" in next(b.label for b in at.button if b.label.startswith("Evaluate"))


def test_compare_on_a_machine_without_the_models_data(with_run: Path, tmp_path: Path) -> None:
    """A fresh machine: the model's data folder is absent. Stored metrics are shown and named, no
    recommendation is made from other data unless asked, and other data is named as such."""
    checkpoint = torch.load(with_run / "best.pt", weights_only=True)
    checkpoint["split"]["data"] = str(tmp_path / "kaggle_3m")  # trained on a folder this machine lacks
    checkpoint["train_config"]["data"] = str(tmp_path / "kaggle_3m")
    torch.save(checkpoint, tmp_path / "shipped.pt")  # installed as the shipped model, which pages pick first
    try:
        at = page("2_Compare")
        assert by_label(at.selectbox, "Model").value == str(tmp_path / "shipped.pt")
        assert "of kaggle_3m at epoch" in texts(at.caption)  # the stored metrics name their data
        radio = by_label(at.radio, "Evaluation data")
        assert radio.options == ["Synthetic phantoms", "A data folder"] and radio.value == "Synthetic phantoms"
        assert "is not on this machine" in texts(at.caption)
        next(b for b in at.button if b.label.startswith("Evaluate every level")).click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert "Results on synthetic phantoms" in texts(at.markdown)
        assert "trained on kaggle_3m, not on this data" in texts(at.caption)
        assert not [s for s in at.success if "synthetic" in str(s.value)]  # no recommendation from other data...
        by_label(at.toggle, "Recommend a level from these results").set_value(True).run()
        assert "on synthetic phantoms" in texts(at.success)  # ...unless the user asks
    finally:
        (tmp_path / "shipped.pt").unlink()


def test_compare_slice_viewer_input_is_grey() -> None:
    from app.images import anatomy
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 200, 30
    grey = anatomy(image)
    assert grey.shape == (4, 4, 3) and (grey == 200).all()  # the FLAIR channel, no colour


# -- Segment -----------------------------------------------------------------------------------
def test_segment_without_a_model_points_to_train(studio: Path) -> None:
    at = page("3_Segment")
    assert "No model yet" in texts(at.sidebar.info)
    assert not at.get("file_uploader")


def test_segment_an_uploaded_lgg_like_tiff(with_run: Path) -> None:
    at = page("3_Segment")
    assert by_label(at.selectbox, "Level").value == 4
    phantom = make_synthetic(n_volumes=1, slices_per_volume=1, size=256, seed=3, lesion_fraction=1.0)
    at.get("file_uploader")[0].upload("slice_1.tif", png(phantom.images[0], ".tif"), "image/tiff")
    at.run()
    assert not at.exception and not at.error
    assert [s.value for s in at.subheader] == ["slice_1.tif"]
    assert len(at.image) == 1 and len(at.get("plotly_chart")) == 1
    assert {m.label for m in at.metric} == {"Lesion area", "Share of the image"}
    assert [b.label for b in at.get("download_button")] == ["Mask PNG", "Overlay PNG"]
    by_label(at.selectbox, "Level").set_value(1).run()  # then the L1 slider (each level has its own)
    by_label(at.slider, "Threshold").set_value(0.95).run()
    assert not at.exception and image_captions(at) == ["L1 at threshold 0.95, lesion in red"]


def test_segment_loads_the_model_once_and_switches_levels_without_a_pass(
    with_run: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One load per checkpoint version; the deepest head's pass stores every level, a shallow head's only its own."""
    import app.checkpoints
    import core.inference

    loads, passes = [], []
    load, predict = app.checkpoints.load_checkpoint, core.inference.predict_levels
    monkeypatch.setattr(app.checkpoints, "load_checkpoint", lambda *a: loads.append(a[0]) or load(*a))
    monkeypatch.setattr(core.inference, "predict_levels",
                        lambda model, x, levels, *a: passes.append(list(levels)) or predict(model, x, levels, *a))
    app.checkpoints._load.clear()
    at = page("3_Segment")
    phantom = make_synthetic(n_volumes=2, slices_per_volume=1, size=64, seed=11, lesion_fraction=1.0).images
    at.get("file_uploader")[0].upload("first.png", png(phantom[0]), "image/png")
    at.run()
    assert passes == [[1, 2, 3, 4, "ens"]]  # L4 runs the whole network: every level from that one pass
    for level in (2, "ens", 1):
        by_label(at.selectbox, "Level").set_value(level).run()
        by_label(at.slider, "Threshold").set_value(0.3).run()
        assert not at.exception and image_captions(at)[0].startswith(f"{level_name(level)} at threshold 0.30")
    assert passes == [[1, 2, 3, 4, "ens"]] and loads == [with_run / "best.pt"]
    at.get("file_uploader")[0].upload("second.png", png(phantom[1]), "image/png")
    at.run()
    assert passes[1:] == [[1]]  # L1 alone computes only its own nodes
    assert loads == [with_run / "best.pt"]


def test_outside_hosts_are_detected() -> None:
    urls = ["http://127.0.0.1:8501/_stcore/health", "ws://localhost:8501/_stcore/stream", "data:image/png;base64,AA",
            "https://fonts.gstatic.com/s/i/short-term/release/materialsymbolsrounded/neurology/default/24px.svg"]
    assert outside(urls) == urls[3:]


def nifti_bytes(volume: np.ndarray, affine: np.ndarray) -> bytes:
    """A ``(S, H, W)`` uint8 volume as ``.nii.gz`` bytes, stored (x, y, z) with this affine."""
    image = nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.int16), affine)
    return gzip.compress(image.to_bytes())


def test_segment_reruns_and_new_sessions_reuse_a_volume_result(with_run: Path) -> None:
    """Regression: moving a slider after a volume, or uploading it again, raised CacheReplayClosureError."""
    volume = make_synthetic(n_volumes=1, slices_per_volume=6, size=64, seed=6, lesion_fraction=1.0).images[..., 1]
    data = nifti_bytes(volume, np.diag([0.9, 0.9, 3.0, 1.0]))
    for session in range(2):  # the second AppTest is a new session (a second tab) of the same process
        at = page("3_Segment")
        at.get("file_uploader")[0].upload("scan.nii.gz", data, "application/gzip")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert [m.value for m in at.metric if m.label == "Slices with lesion"]
        by_label(at.slider, "Threshold").set_value(0.9).run()
        assert not at.exception, [e.value for e in at.exception]
        by_label(at.slider, "Overlay opacity").set_value(0.1).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("threshold 0.90" in c for c in image_captions(at)), image_captions(at)


def test_segment_states_the_levels_quality_and_how_the_input_differs(with_run: Path) -> None:
    at = page("3_Segment")
    assert "L4: validation volume Dice" in texts(at.sidebar.caption) and "stored in the checkpoint" in texts(at.sidebar.caption)
    image = make_synthetic(n_volumes=1, slices_per_volume=1, size=48, seed=2).images[0]
    at.get("file_uploader")[0].upload("grey.png", cv2.imencode(".png", image[..., 1])[1].tobytes(), "image/png")
    at.run()
    assert not at.exception
    warning = texts(at.warning)
    assert "grey.png differs from the model's training data" in warning
    assert "one channel" in warning and "pixels" not in warning  # a square slice shrunk as training did: no note
    by_label(at.selectbox, "Level").set_value(1).run()
    assert "L1: validation volume Dice" in texts(at.sidebar.warning) + texts(at.sidebar.caption)


def test_level_quality_and_input_differences() -> None:
    from app.guidance import input_differences, level_quality
    from core.scans import Scan

    meta = {"epoch": 26, "split": {"data": "/data/kaggle_3m", "val": ["a", "b"]},
            "model": {"in_channels": 3}, "preprocessing": {"input_size": 256},
            "metrics": {"n_volumes": 15, "n_images": 561, "levels": {
                1: {"dice": 0.67, "volume_dice_mean": 0.40}, 3: {"dice": 0.85, "volume_dice_mean": 0.69},
                4: {"dice": 0.87, "volume_dice_mean": 0.715}, "ens": {"dice": 0.82, "volume_dice_mean": 0.56}}}}
    l1 = level_quality(meta, 1)
    assert l1.weak and not level_quality(meta, 3).weak and not level_quality(meta, 4).weak
    assert l1.sentence() == ("L1: validation volume Dice 0.400, 56 % of L4's 0.715 (stored in the checkpoint: "
                             "15 validation volumes (561 slices) of kaggle_3m at epoch 26).")
    assert level_quality({"model": {}, "preprocessing": {}}, 1) is None  # nothing stored: nothing claimed
    lgg_like = Scan("slice.tif", "image", np.zeros((1, 256, 256, 3), np.uint8) + np.array([10, 200, 30], np.uint8))
    assert "one channel" in input_differences(Scan("grey.png", "image", np.zeros((1, 256, 256, 3), np.uint8)), meta)[0]
    assert input_differences(lgg_like, meta) == []
    small = Scan("small.png", "image", np.zeros((1, 128, 128, 3), np.uint8) + np.array([10, 200, 30], np.uint8))
    assert input_differences(small, meta) == ["slices of 128×128 pixels, enlarged to the 256×256 the model was "
                                              "trained at: less detail than it learned from"]
    flair = Scan("flair.nii.gz", "nifti", np.zeros((4, 240, 200, 3), np.uint8), intensity_note="int16 values windowed",
                 channels_note="single-channel scan: …")
    notes = " ".join(input_differences(flair, meta))
    assert "one channel" in notes and "200×240 pixels" in notes and "aspect ratio" in notes and "int16" in notes


def test_segment_defaults_to_the_checkpoints_post_processing_rule(studio: Path, trained: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    runs = studio / "runs"
    shutil.copytree(trained, runs)
    best = runs / "tiny" / "best.pt"
    checkpoint = torch.load(best, weights_only=True)
    checkpoint["postprocessing"] = {"threshold": 0.7, "min_component_fraction": 0.5, "hflip": True,
                                    "levels": {"2": {"threshold": 0.3, "min_component_fraction": 0.0},
                                               "3": {"threshold": 0.4, "min_component_fraction": 0.5}}}
    torch.save(checkpoint, best)
    monkeypatch.setenv("UNETPP_STUDIO_RUNS", str(runs))
    at = page("3_Segment")
    assert by_label(at.slider, "Threshold").value == 0.7
    assert by_label(at.slider, "Drop small lesion parts").value == 0.5
    by_label(at.selectbox, "Level").set_value(2).run()  # a pruned head brings its own rule
    assert by_label(at.slider, "Threshold").value == 0.3
    assert by_label(at.slider, "Drop small lesion parts").value == 0.0
    # a moved slider gives way to the next level's rule too, even where that rule has the same value as its default
    by_label(at.selectbox, "Level").set_value(4).run()
    by_label(at.slider, "Drop small lesion parts").set_value(0.8).run()
    by_label(at.selectbox, "Level").set_value(3).run()
    assert (by_label(at.slider, "Threshold").value, by_label(at.slider, "Drop small lesion parts").value) == (0.4, 0.5)
    by_label(at.selectbox, "Level").set_value(4).run()
    volume = make_synthetic(n_volumes=1, slices_per_volume=4, size=64, seed=6, lesion_fraction=1.0).images[..., 1]
    at.get("file_uploader")[0].upload("scan.nii.gz", nifti_bytes(volume, np.eye(4)), "application/gzip")
    at.run()
    assert not at.exception and any("threshold 0.70" in c for c in image_captions(at))


def test_segment_several_files_names_the_bad_ones(with_run: Path) -> None:
    at = page("3_Segment")
    image = make_synthetic(n_volumes=1, slices_per_volume=1, size=64, seed=1).images[0]
    huge = np.zeros((5001, 5001), np.uint8)
    uploader = at.get("file_uploader")[0]
    uploader.set_value([
        ("a.png", png(image), "image/png"), ("a.jpg", png(image, ".jpg"), "image/jpeg"),
        ("notes.png", b"not an image at all", "image/png"), ("empty.tif", b"", "image/tiff"),
        ("huge.png", cv2.imencode(".png", huge)[1].tobytes(), "image/png"),
    ])
    at.run()
    assert not at.exception
    errors = texts(at.error)
    assert "notes.png: not a readable image" in errors
    assert "empty.tif: the file is empty" in errors
    assert "huge.png: 5001×5001 pixels is over the limit" in errors
    assert list(at.dataframe[0].value["file"]) == ["a.jpg", "a.png"]  # natural name order
    labels = [b.label for b in at.get("download_button")]
    assert labels[0] == "Download all masks (2 files, zip)"
    assert labels.count("Mask PNG") == 2


def test_a_unet_checkpoint_works_on_every_page(studio: Path, tmp_path: Path) -> None:
    runs = studio / "runs"
    Trainer(TrainConfig(data="synthetic", arch="unet", width=4, size=32, epochs=1, out=str(runs / "unet"))).fit()
    assert "Run unet" in texts(page().markdown)
    at = page("2_Compare")
    next(b for b in at.button if b.label.startswith("Evaluate")).click().run()
    assert not at.exception and not at.success  # one head: nothing to recommend
    assert list(at.dataframe[0].value["level"]) == ["L4"]
    assert image_captions(at)[2].startswith("L4 · Dice") and len(at.image) == 3
    at = page("3_Segment")
    assert by_label(at.selectbox, "Level").options == ["L4"]
    image = make_synthetic(n_volumes=1, slices_per_volume=1, size=48, seed=2).images[0]
    at.get("file_uploader")[0].upload("grey.png", cv2.imencode(".png", image[..., 1])[1].tobytes(), "image/png")
    at.run()
    assert not at.exception and not at.error and len(at.image) == 1


def test_the_app_loads_models_only_from_checkpoints_and_runs(with_run: Path, tmp_path: Path) -> None:
    best = with_run / "best.pt"
    stray = tmp_path / "elsewhere" / "model.pt"
    stray.parent.mkdir()
    stray.write_bytes(best.read_bytes())
    link = with_run / "escape.pt"
    link.symlink_to(stray)
    try:
        for path in (stray, link, with_run / ".." / ".." / stray.relative_to(with_run.parent.parent)):
            with pytest.raises(CheckpointError, match="only from checkpoints/ and runs/"):
                load_model(path)
    finally:
        link.unlink()
    assert load_model(best).model.levels
    at = page("3_Segment")
    at.session_state["checkpoint"] = str(stray)  # a path that reaches the page by another way
    at.run()
    assert not at.exception and by_label(at.selectbox, "Model").value == str(best)


# -- helpers -----------------------------------------------------------------------------------
def test_recommend_picks_the_smallest_level_within_one_dice_point() -> None:
    def result(*scores: float) -> dict:
        return {"levels": {str(i + 1): {"dice": s} for i, s in enumerate(scores)} | {"ens": {"dice": 0.99}}}
    assert recommend(result(0.80, 0.895, 0.90, 0.90)) == "2"
    assert recommend(result(0.80, 0.85, 0.88, 0.90)) == "4"
    assert recommend(result(0.91, 0.85, 0.88, 0.90)) == "1"
    assert recommend({"levels": {"4": {"dice": 0.9}}}) is None


def test_image_helpers() -> None:
    image = np.full((8, 8, 3), 100, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    tinted = overlay(image, mask, opacity=1.0)
    assert (tinted[4, 4] != image[4, 4]).any() and (tinted[0, 0] == image[0, 0]).all()
    votes = agreement(image, [mask, mask, np.zeros_like(mask), np.zeros_like(mask)])
    assert (votes[4, 4] != votes[0, 0]).any()
    assert enlarge(image, 256).shape == (256, 256, 3)
    assert unique_stems(["a.png", "a.tif", "a_2.png", "b.png"]) == ["a", "a_2", "a_2_2", "b"]
    assert zip_bytes({"x.txt": b"1"})[:2] == b"PK"


def test_forward_passes_take_turns_first_come_first_served() -> None:
    """Concurrent sessions never run more passes at once than there are slots, and are served in order."""
    import threading

    from app.compute import FairSlots

    slots, active, peak, order = FairSlots(1), [0], [0], []
    lock = threading.Lock()
    gate = threading.Event()

    def work(i: int) -> None:
        with slots.turn():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                order.append(i)
            gate.wait(5) if i == 0 else time.sleep(0.01)
            with lock:
                active[0] -= 1

    first = threading.Thread(target=work, args=(0,))
    first.start()
    while not order:
        time.sleep(0.005)
    threads = []
    for i in range(1, 6):  # queue up behind the first, one after another
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
        time.sleep(0.02)
    gate.set()
    for t in [first, *threads]:
        t.join(10)
    assert peak[0] == 1 and order == [0, 1, 2, 3, 4, 5]

    two = FairSlots(2)
    with two.turn(), two.turn():
        assert two.busy == 2


def test_a_multi_class_two_channel_nifti_model_on_every_page(studio: Path, tmp_path: Path) -> None:
    from test_nifti_dataset import nnunet_dataset

    data = nnunet_dataset(tmp_path / "Dataset004_Toy", cases=4)
    Trainer(TrainConfig(data=str(data), width=4, epochs=1, batch_size=4, out=str(studio / "runs" / "mc"))).fit()
    assert "Run mc" in texts(page().markdown)
    at = page("2_Compare")
    next(b for b in at.button if b.label.startswith("Evaluate")).click().run()
    table = at.dataframe[1].value
    assert not at.exception and list(table["level"])[:4] == ["L1", "L2", "L3", "L4"]
    assert {"volume Dice core", "volume Dice band"} <= set(table.columns)
    at = page("3_Segment")
    assert "Classes: :red[■] core · :blue[■] band" in texts(at.caption)
    files = {f"case00_{k:04d}.nii.gz": (data / "imagesTr" / f"case00_{k:04d}.nii.gz").read_bytes() for k in (0, 1)}
    for name, content in files.items():
        at.get("file_uploader")[0].upload(name, content, "application/gzip")
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [s.value for s in at.subheader] == ["case00.nii.gz"]  # two channel files, one scan
    assert "mapped to 8 bits" not in texts(at.warning)  # trained on windowed NIfTI too: no bit-depth warning
    nifti = next(b for b in at.get("download_button") if b.label == "Mask (NIfTI)")
    assert nifti is not None
