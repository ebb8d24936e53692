"""The app in a real browser: ``streamlit run`` plus Debian's chromium driven by Playwright.

Trains the demo on Train (watching the live chart grow, from two tabs), segments an uploaded LGG-like
TIFF and a NIfTI volume (moving its slice slider) on Segment and evaluates the four levels on Compare.
Every request the pages make is recorded: none may go to a host other than the app's own.
Screenshots go to ``tests/artifacts/``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from app.browser import CHROMIUM, CHROMIUM_ARGS, free_port, outside
from core.data.synthetic import make_synthetic

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
STEP_POINTS_JS = """() => {
    for (const el of document.querySelectorAll('.js-plotly-plot')) {
        const title = el.layout && el.layout.title ? String(el.layout.title.text) : '';
        if (title.includes('Step loss')) return el._fullData[0].x.length;  // x of the per-step trace
    }
    return 0;
}"""
LATENCY_TRACES_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .filter(el => el.layout && String(el.layout.title.text).includes('against latency')
                  && !String(el.layout.title.text).includes('stored'))  // the evaluation's chart, not the stored one
    .flatMap(el => el.data.map(t => t.name))"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                "(apt-get install -y chromium)")
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect
expect.set_options(timeout=20_000)  # a busy 2-core CI machine renders slowly


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free port with an empty runs folder; yields its URL."""
    home = tmp_path_factory.mktemp("studio")
    port = free_port()
    env = {**os.environ, "UNETPP_STUDIO_RUNS": str(home / "runs"), "UNETPP_STUDIO_CHECKPOINT": str(home / "none.pt"),
           "OMP_NUM_THREADS": "1"}
    url = f"http://127.0.0.1:{port}"
    with open(home / "server.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert process.poll() is None, (home / "server.log").read_text()
            assert time.monotonic() < deadline, "streamlit did not start in 60 s"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def requests_seen() -> list[str]:
    """Every URL a page of the test's browser context requested (filled by ``page``)."""
    return []


@pytest.fixture
def page(browser, requests_seen: list[str]) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
    context.on("request", lambda request: requests_seen.append(request.url))  # every tab of the context
    yield context.new_page()
    context.close()


def assert_no_exception(page) -> None:
    """The page shows no Streamlit exception box."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    assert "Traceback" not in page.inner_text("body")


def settle(page) -> None:
    """Wait until the script (or fragment) run in progress has finished: no stale element, no running status."""
    page.wait_for_function("""() => !document.querySelector('[data-stale="true"]')
        && !document.querySelector('[data-testid="stStatusWidget"]')""", timeout=60_000)


def download(page, label: str, tries: int = 3):
    """Click the download button ``label`` and return the download; a rerun that replaces the button's file
    mid-download cancels it, so wait for the page to settle and retry."""
    for attempt in range(tries):
        settle(page)
        with page.expect_download() as info:
            page.get_by_test_id("stDownloadButton").filter(has_text=label).click()
        if info.value.failure() is None:
            return info.value
        assert attempt < tries - 1, f"{label}: download failed {tries} times: {info.value.failure()}"
    raise AssertionError("unreachable")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_demo_training_segmentation_and_comparison(server: str, page, browser, requests_seen, capsys) -> None:
    # Home: explains UNet++ and says the shipped model is missing, without an error
    page.goto(server)
    expect(page.get_by_role("heading", name="UNet++ Studio")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("is not installed yet")).to_be_visible()
    expect(page.locator(".js-plotly-plot")).to_have_count(1)
    page.wait_for_function("document.querySelector(\"link[rel='shortcut icon']\").href.includes('/media/')")
    shot(page, "home")

    # Train: the demo with its default settings, watched live
    page.goto(f"{server}/Train")
    expect(page.get_by_role("textbox", name="Data folder")).to_be_disabled()  # synthetic data needs no folder
    shot(page, "train_form")
    name = page.get_by_role("textbox", name="Run name")
    name.fill("browser-demo")
    name.press("Tab")
    started = time.monotonic()
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"Epoch \d+/10 · step"))).to_be_visible(timeout=60_000)
    first = 0
    deadline = time.monotonic() + 60
    while (first := page.evaluate(STEP_POINTS_JS)) == 0:
        assert time.monotonic() < deadline, "no step loss chart within 60 s"
        page.wait_for_timeout(250)
    page.wait_for_function(f"({STEP_POINTS_JS})() > {first}", timeout=60_000)
    shot(page, "train_live")

    # a second tab sees the same run training
    other = page.context.new_page()
    other.goto(f"{server}/Train")
    expect(other.get_by_text(re.compile("browser-demo: training"))).to_be_visible(timeout=30_000)
    other.close()

    expect(page.get_by_text(re.compile(r"completed · epoch 10/10"))).to_be_visible(timeout=240_000)
    trained = time.monotonic() - started
    # the page reloads as a whole once the run ends: the run picker says so too
    expect(page.get_by_role("combobox", name="Run", exact=True)).to_have_value("browser-demo · completed")
    expect(page.get_by_text("Validation samples")).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stDownloadButton").filter(has_text="best.pt")).to_be_visible()
    assert page.evaluate(STEP_POINTS_JS) == 140  # 10 epochs of 14 steps: every lesion slice, 30% of the empty ones
    shot(page, "train_done")

    # Segment: an LGG-like slice (256 x 256 RGB TIFF), with the run's best.pt
    image = make_synthetic(n_volumes=1, slices_per_volume=1, size=256, seed=5, lesion_fraction=1.0).images[0]
    tiff = ARTIFACTS / "upload_slice.tif"
    cv2.imwrite(str(tiff), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    page.goto(f"{server}/Segment")
    summary = re.compile(r"UNet\+\+, width 8 · 4 deep-supervision heads · 64×64 input · saved at epoch \d+")
    expect(page.get_by_text(summary)).to_be_visible(timeout=30_000)  # the run's best.pt, in the sidebar
    upload_started = time.monotonic()
    page.locator("input[type=file]").set_input_files(str(tiff))
    expect(page.get_by_text(re.compile(r"L4 at threshold 0\.50"))).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stDownloadButton").filter(has_text="Mask PNG")).to_be_visible()
    expect(page.get_by_test_id("stDownloadButton").filter(has_text="Overlay PNG")).to_be_visible()
    segmented = time.monotonic() - upload_started
    mask = cv2.imread(download(page, "Mask PNG").path(), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (256, 256) and set(mask.ravel().tolist()) <= {0, 255}
    shot(page, "segment")

    # Segment a NIfTI volume: slice viewer, slider, lesion statistics and a NIfTI mask on the input's grid
    volume = make_synthetic(n_volumes=1, slices_per_volume=12, size=64, seed=6, lesion_fraction=1.0).images[..., 1]
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    nifti = ARTIFACTS / "upload_volume.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.int16) * 10, affine), nifti)
    page.goto(f"{server}/Segment")
    expect(page.get_by_text(summary)).to_be_visible(timeout=30_000)
    page.locator("input[type=file]").set_input_files(str(nifti))
    caption = page.get_by_text(re.compile(r"^Slice (\d+) of 12: lesion"))
    expect(caption).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(r"nifti, 12 slices of 64×64, voxel 0.9 × 0.9 × 3 mm"))).to_be_visible()
    expect(page.get_by_text("Lesion volume")).to_be_visible()
    before = caption.inner_text()
    slider = page.get_by_test_id("stSlider").filter(has_text="Slice").get_by_role("slider")
    slider.focus()
    slider.press("Home")
    expect(page.get_by_text(re.compile(r"^Slice 1 of 12: lesion"))).to_be_visible()
    slider.press("ArrowRight")
    expect(page.get_by_text(re.compile(r"^Slice 2 of 12: lesion"))).to_be_visible()
    assert before.startswith("Slice ")
    expect(page.locator(".js-plotly-plot").first).to_be_visible()  # the lesion-area chart, redrawn after the slider moved
    mask_file = download(page, "Mask (NIfTI)")
    saved = ARTIFACTS / mask_file.suggested_filename  # nibabel reads the format from the name
    mask_file.save_as(saved)
    assert saved.name == "upload_volume_mask.nii.gz"
    written = nib.load(saved)
    assert written.shape == (64, 64, 12) and np.allclose(written.affine, affine)
    shot(page, "segment_volume")

    # every sidebar slider re-runs the page on the stored result (it used to raise CacheReplayClosureError)
    for label in ("Threshold", "Overlay opacity"):
        knob = page.get_by_test_id("stSlider").filter(has_text=label).get_by_role("slider")
        knob.focus()
        knob.press("End")
        expect(page.get_by_text(re.compile(r"^Slice \d+ of 12: lesion"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"threshold 0\.95"))).to_be_visible()
    assert_no_exception(page)
    # the same volume uploaded in a second tab is served from the store, with no error
    second = page.context.new_page()
    second.goto(f"{server}/Segment")
    expect(second.get_by_text(summary)).to_be_visible(timeout=30_000)
    second.locator("input[type=file]").set_input_files(str(nifti))
    expect(second.get_by_text(re.compile(r"^Slice (\d+) of 12: lesion"))).to_be_visible(timeout=60_000)
    assert_no_exception(second)
    second.close()

    # Compare: the checkpoint's stored validation metrics with latency measured here, then the four levels
    # (and the ensemble) evaluated on the run's validation split
    page.goto(f"{server}/Compare")
    expect(page.get_by_text(re.compile("measured on this machine now"))).to_be_visible(timeout=60_000)
    shot(page, "compare_stored")
    page.get_by_role("button", name=re.compile("Evaluate every level")).click()
    expect(page.get_by_text(re.compile(r"(Use|Keep) L\d.*evaluated here"))).to_be_visible(timeout=120_000)
    levels = '["L1", "L2", "L3", "L4", "ensemble"]'
    page.wait_for_function(f"JSON.stringify(({LATENCY_TRACES_JS})()) === JSON.stringify({levels})", timeout=30_000)
    for level in ("L1", "L2", "L3", "L4"):
        expect(page.get_by_text(re.compile(rf"^{level} · Dice"))).to_be_visible()
    expect(page.get_by_text(re.compile("^Disagreement · "))).to_be_visible()
    shot(page, "compare")

    # nothing left the machine: not the favicon, not an icon font, not a chart library
    assert any("/_stcore/" in u for u in requests_seen) and any("/media/" in u for u in requests_seen)
    assert not outside(requests_seen), sorted(set(outside(requests_seen)))
    with capsys.disabled():
        print(f"\n[browser] demo training (defaults, 10 epochs) {trained:.1f} s; segmentation {segmented:.1f} s")
