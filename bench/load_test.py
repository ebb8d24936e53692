"""Many browser sessions on one app process: time to result, correctness and shared results.

Starts ``streamlit run streamlit_app.py`` on 127.0.0.1 (a free port, an empty runs folder, the
shipped model) and drives Debian's chromium with Playwright; nothing leaves the machine. For each
session count N (default 1, 4 and 8), in fresh browser contexts (one Streamlit session each):

1. ``distinct``: the N sessions upload N different NIfTI volumes at once. Time to result is from
   the upload to the slice viewer showing that session's result. Each session's lesion voxel count
   must match the count computed offline for its own volume (so no session sees another's result).
2. ``slider``: each session then moves the Threshold slider to its end at once; time until its
   page shows the re-thresholded result (no inference: the probabilities are stored).
3. ``shared``: N new sessions upload one volume that an earlier session already segmented; a
   stored result should cost no inference, only the page's own work.

Every page is checked for Streamlit exceptions after each phase. The server's CPU seconds and
thread count are reported per phase. Bounded: at most 16 sessions, a timeout per phase.

    python bench/load_test.py                          # 1, 4 and 8 sessions, 32 slices of 256x256
    python bench/load_test.py --sessions 1 2 --slices 8 --json /tmp/load.json   # a quick check

Figures from it belong in docs/benchmarks.md with the machine they were measured on.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.browser import CHROMIUM, CHROMIUM_ARGS, free_port, outside  # noqa: E402
from core.files import atomic_write  # noqa: E402

MAX_SESSIONS = 16
RESULT = re.compile(r"^Slice \d+ of (\d+): lesion")


def volume_bytes(seed: int, slices: int, size: int) -> bytes:
    """A single-channel NIfTI phantom (int16, 0.9 x 0.9 x 3 mm) with lesions; different per seed."""
    import nibabel as nib

    from core.data.synthetic import make_synthetic

    flair = make_synthetic(n_volumes=1, slices_per_volume=slices, size=size, seed=seed, lesion_fraction=1.0).images[..., 1]
    data = np.ascontiguousarray(flair.transpose(2, 1, 0)).astype(np.int16) * 10
    return gzip.compress(nib.Nifti1Image(data, np.diag([0.9, 0.9, 3.0, 1.0])).to_bytes())


def expected_voxels(checkpoint: Path, name: str, data: bytes, threshold: float = 0.5) -> int:
    """The lesion voxel count the app should show for this file at the model's deepest level."""
    import torch

    from app.segmentation import BATCH
    from core.checkpoint import load_checkpoint
    from core.scans import read_scan
    from core.inference import lesion_masks, segment_images
    from core.levels import default_level
    from core.runtime import autocast_dtype, select_device

    device = select_device("auto")
    model, meta = load_checkpoint(checkpoint, device)
    scan = read_scan(name, data, model.in_channels)
    level = default_level(model)
    with torch.no_grad():
        probs = np.concatenate([
            segment_images(model, meta["preprocessing"], scan.slices[i : i + BATCH], level,
                           autocast_dtype(device, "auto"), batch_size=BATCH)
            for i in range(0, len(scan.slices), BATCH)])
    return int((lesion_masks(probs, threshold)[1] > 0).sum())


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    return int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Threads:")))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return float(np.percentile(ordered, q)) if ordered else float("nan")


class Server:
    """``streamlit run`` in a subprocess on a free local port."""

    def __init__(self, home: Path, checkpoint: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "UNETPP_STUDIO_RUNS": str(home / "runs"), "UNETPP_STUDIO_CHECKPOINT": str(checkpoint)}
        self.log = home / "server.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(self.port),
                 "--server.address", "127.0.0.1", "--server.headless", "true"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Session:
    """One browser context (a Streamlit session) on the Segment page."""

    def __init__(self, browser, url: str, requests: list[str]) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 1400})
        self.context.on("request", lambda r: requests.append(r.url))
        self.page = self.context.new_page()
        self.page.goto(f"{url}/Segment")
        self.page.locator("input[type=file]").wait_for(state="attached", timeout=120_000)

    def upload(self, path: Path) -> float:
        self.page.locator("input[type=file]").set_input_files(str(path))
        return time.perf_counter()

    def shows_result(self, threshold: str | None = None) -> bool:
        captions = self.page.get_by_text(RESULT)
        if captions.count() == 0:
            return False
        return threshold is None or f"threshold {threshold}" in captions.first.inner_text()

    def lesion_voxels(self) -> int:
        metric = self.page.get_by_test_id("stMetric").filter(has_text="Lesion voxels")
        return int(metric.get_by_test_id("stMetricValue").inner_text().replace(",", ""))

    def move_threshold_to_end(self) -> float:
        knob = self.page.get_by_test_id("stSlider").filter(has_text="Threshold").get_by_role("slider")
        knob.focus()
        knob.press("End")
        return time.perf_counter()

    def errors(self) -> list[str]:
        boxes = self.page.get_by_test_id("stException")
        return [boxes.nth(i).inner_text()[:300] for i in range(boxes.count())]

    def close(self) -> None:
        self.context.close()


def wait_all(sessions: list[Session], started: list[float], done, timeout: float) -> list[float]:
    """Seconds from each session's start until ``done(session)`` holds, polling every page in turn."""
    times: list[float | None] = [None] * len(sessions)
    deadline = time.monotonic() + timeout
    while any(t is None for t in times):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(t is None for t in times)} of {len(sessions)} sessions without a result "
                               f"after {timeout:.0f} s")
        for i, session in enumerate(sessions):
            if times[i] is None and done(session):
                times[i] = time.perf_counter() - started[i]
        time.sleep(0.05)
    return times  # type: ignore[return-value]


def summary(values: list[float]) -> dict[str, float]:
    return {"p50_s": round(percentile(values, 50), 3), "p95_s": round(percentile(values, 95), 3),
            "max_s": round(max(values), 3), "mean_s": round(statistics.fmean(values), 3)}


def run(args: argparse.Namespace) -> dict:
    from playwright.sync_api import sync_playwright

    checkpoint = Path(args.checkpoint).resolve()
    distinct = sum(args.sessions)  # every round uploads volumes not segmented before
    home = Path(tempfile.mkdtemp(prefix="unetpp_load_"))
    print(f"volumes: {distinct} distinct + 1 shared, {args.slices} slices of {args.size}x{args.size}", flush=True)
    files = []
    for seed in range(distinct + 1):
        path = home / f"volume_{seed}.nii.gz"
        path.write_bytes(volume_bytes(100 + seed, args.slices, args.size))
        files.append(path)
    expected = {}
    if not args.no_check:
        print("expected lesion voxels (offline, one process) …", flush=True)
        for path in files:
            expected[path.name] = expected_voxels(checkpoint, path.name, path.read_bytes())
    server = Server(home, checkpoint)
    requests: list[str] = []
    report: dict = {"slices": args.slices, "size": args.size, "checkpoint": str(checkpoint), "cpus": os.cpu_count(),
                    "runs": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            shared = files[-1]
            warm = Session(browser, server.url, requests)  # segments the shared volume once; loads the model
            warm.upload(shared)
            wait_all([warm], [time.perf_counter()], lambda s: s.shows_result(), args.timeout)
            warm.close()
            offset = 0
            for n in args.sessions:
                row: dict = {"sessions": n}
                sessions = [Session(browser, server.url, requests) for _ in range(n)]
                volumes = files[offset : offset + n]
                offset += n
                cpu, t = cpu_seconds(server.process.pid), time.perf_counter()
                starts = [s.upload(v) for s, v in zip(sessions, volumes)]
                row["distinct"] = summary(wait_all(sessions, starts, lambda s: s.shows_result(), args.timeout))
                row["distinct"]["server_cpu_s"] = round(cpu_seconds(server.process.pid) - cpu, 2)
                row["distinct"]["wall_s"] = round(time.perf_counter() - t, 2)
                row["server_threads"] = threads(server.process.pid)
                wrong = []
                for s, v in zip(sessions, volumes):
                    if expected and abs(s.lesion_voxels() - expected[v.name]) > max(2, 0.002 * expected[v.name]):
                        wrong.append(f"{v.name}: page {s.lesion_voxels()}, expected {expected[v.name]}")
                row["wrong_results"] = wrong

                starts = [s.move_threshold_to_end() for s in sessions]
                row["slider"] = summary(wait_all(sessions, starts, lambda s: s.shows_result("0.95"), args.timeout))
                errors = [e for s in sessions for e in s.errors()]
                for s in sessions:
                    s.close()

                sessions = [Session(browser, server.url, requests) for _ in range(n)]
                cpu = cpu_seconds(server.process.pid)
                starts = [s.upload(shared) for s in sessions]
                row["shared"] = summary(wait_all(sessions, starts, lambda s: s.shows_result(), args.timeout))
                row["shared"]["server_cpu_s"] = round(cpu_seconds(server.process.pid) - cpu, 2)
                if expected:
                    wrong += [f"{shared.name} (shared): page {s.lesion_voxels()}" for s in sessions
                              if abs(s.lesion_voxels() - expected[shared.name]) > max(2, 0.002 * expected[shared.name])]
                errors += [e for s in sessions for e in s.errors()]
                for s in sessions:
                    s.close()
                row["errors"] = errors
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
            browser.close()
    finally:
        server.stop()
    report["outside_requests"] = sorted(set(outside(requests)))
    return report


def print_table(report: dict) -> None:
    print(f"\n{report['slices']} slices of {report['size']}x{report['size']} per volume, {report['cpus']} CPUs")
    print(f"{'sessions':>8} {'upload p50':>11} {'p95':>7} {'slider p50':>11} {'p95':>7} {'stored p50':>11} {'p95':>7}"
          f" {'cpu s':>7} {'errors':>7}")
    for r in report["runs"]:
        d, s, c = r["distinct"], r["slider"], r["shared"]
        print(f"{r['sessions']:>8} {d['p50_s']:>10.2f}s {d['p95_s']:>6.2f}s {s['p50_s']:>10.2f}s {s['p95_s']:>6.2f}s "
              f"{c['p50_s']:>10.2f}s {c['p95_s']:>6.2f}s {d['server_cpu_s']:>7.1f} "
              f"{len(r['errors']) + len(r['wrong_results']):>7}")
    print(f"requests to other hosts: {report['outside_requests'] or 'none'}")


def main() -> int:
    from core.paths import DEFAULT_CHECKPOINT

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8], help="session counts to run, in order")
    parser.add_argument("--slices", type=int, default=32, help="slices per uploaded volume")
    parser.add_argument("--size", type=int, default=256, help="slice width and height in pixels")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="the model the app serves")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per phase")
    parser.add_argument("--no-check", action="store_true", help="skip the offline check of each session's result")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        parser.error(f"needs Debian's chromium at {CHROMIUM}")
    if max(args.sessions) > MAX_SESSIONS or min(args.sessions) < 1:
        parser.error(f"--sessions: between 1 and {MAX_SESSIONS}")
    report = run(args)
    print_table(report)
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=1))
    failed = any(r["errors"] or r["wrong_results"] for r in report["runs"]) or report["outside_requests"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
