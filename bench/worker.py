"""One benchmark measurement in a fresh process; ``bench/run.py`` starts it and reads its JSON.

A fresh process per row gives each row its own allocator settings (they only take effect at
process start) and its own peak-memory reading. Usage (normally via run.py)::

    python bench/worker.py train --impl ours --width 32 --size 256 --batch 8 --steps 5
    python bench/worker.py epoch --data ../shared/data/lgg_mri/kaggle_3m --slices 64
    python bench/worker.py infer --mode fast --levels 1 2 3 4 ens
    python bench/worker.py upload --checkpoint checkpoints/unetpp_lgg.pt
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import default_normalization, load_checkpoint  # noqa: E402
from core.complexity import count_flops, count_parameters  # noqa: E402
from core.data import SliceDataset, load_source, read_image, train_augmentation  # noqa: E402
from core.data.lgg import list_lgg  # noqa: E402
from core.data.synthetic import make_synthetic  # noqa: E402
from core.inference import normalize, predict_level, segment_image  # noqa: E402
from core.levels import ENSEMBLE, default_level, parse_level  # noqa: E402
from core.losses import BCEDiceLoss, DeepSupervisionLoss  # noqa: E402
from core.models import NestedUNet, build_model  # noqa: E402
from core.runtime import autocast_dtype, memory_format  # noqa: E402
from core.training.trainer import training_step  # noqa: E402

NORM = default_normalization(3)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    times = []
    for i in range(warmup + repeats):
        t = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return times


def synthetic_batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same uint8 images and 0/1 masks in every process (seeded)."""
    data = make_synthetic(n_volumes=1, slices_per_volume=batch, size=size, seed=0)
    images = torch.from_numpy(np.ascontiguousarray(data.images.transpose(0, 3, 1, 2)))
    return images, torch.from_numpy(data.masks)


# -- training steps --------------------------------------------------------------------------
Step = Callable[[torch.Tensor, torch.Tensor], float]


def ours_step(width: int, arch: str = "unetpp") -> Step:
    """Our trainer's step: channels_last, bf16 autocast where the CPU has it (core.training); UNet++ with
    deep supervision unless ``arch`` names another registered architecture."""
    device = torch.device("cpu")
    model = build_model({"arch": arch, "base_width": width}).to(memory_format=memory_format(device)).train()
    criterion = DeepSupervisionLoss(BCEDiceLoss(0.5))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler(enabled=False)
    dtype = autocast_dtype(device)
    return lambda images, masks: training_step(model, criterion, optimizer, scaler, images, masks, NORM, dtype)


def seed_step(width: int) -> Step:
    """The blog post's loop: fp32, default memory format, normalise each batch, metrics via numpy."""
    model = NestedUNet(3, 1, width, deep_supervision=True).train()
    return _plain_step(model, numpy_metrics=True)


def monai_step(width: int) -> Step:
    """MONAI BasicUNetPlusPlus with our features (n, 2n, 4n, 8n, 16n; n for the last up block), deep
    supervision, its defaults otherwise (instance norm, LeakyReLU, transposed-conv upsampling)."""
    from monai.networks.nets import BasicUNetPlusPlus

    features = (width, 2 * width, 4 * width, 8 * width, 16 * width, width)
    model = BasicUNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=1, features=features,
                              deep_supervision=True).train()
    return _plain_step(model, numpy_metrics=False)


def monai_bilinear_step(width: int) -> Step:
    """MONAI BasicUNetPlusPlus with bilinear (align_corners=True) upsampling, as our design, instead of deconv."""
    from monai.networks.nets import BasicUNetPlusPlus

    features = (width, 2 * width, 4 * width, 8 * width, 16 * width, width)
    model = BasicUNetPlusPlus(spatial_dims=2, in_channels=3, out_channels=1, features=features,
                              deep_supervision=True, upsample="nontrainable").train()
    return _plain_step(model, numpy_metrics=False)


def smp_step(width: int) -> Step:
    """segmentation_models_pytorch UnetPlusPlus, resnet34 encoder, no pretrained weights."""
    import segmentation_models_pytorch as smp

    model = smp.UnetPlusPlus("resnet34", encoder_weights=None, in_channels=3, classes=1).train()
    return _plain_step(model, numpy_metrics=False)


def _plain_step(model: torch.nn.Module, numpy_metrics: bool) -> Step:
    criterion = DeepSupervisionLoss(BCEDiceLoss(0.5))
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    mean = torch.tensor(NORM["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(NORM["std"]).view(1, -1, 1, 1)

    def step(images: torch.Tensor, masks: torch.Tensor) -> float:
        x = (images.float() / 255 - mean) / std
        outputs = model(x)
        loss = criterion(outputs, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if numpy_metrics:  # the post's per-batch IoU: copy the output to numpy, threshold there
            out = (outputs[-1] if isinstance(outputs, list) else outputs).data.cpu().numpy() > 0.5
            target = masks.numpy()[:, None] > 0.5
            float((out & target).sum() / ((out | target).sum() + 1e-5))
        return loss.item()

    return step


STEPS = {"ours": ours_step, "seed": seed_step, "monai": monai_step, "monai_bilinear": monai_bilinear_step,
         "smp": smp_step}


def bench_train(args: argparse.Namespace) -> dict:
    images, masks = synthetic_batch(args.batch, args.size)
    step = STEPS[args.impl](args.width)
    times = timed(lambda: step(images, masks), args.steps, warmup=2)
    median = statistics.median(times)
    return {"impl": args.impl, "seconds_per_step": times, "median_s": median,
            "images_per_s": args.batch / median, "ms_per_image": median * 1000 / args.batch}


# -- a whole epoch with data loading -----------------------------------------------------------
def bench_epoch(args: argparse.Namespace) -> dict:
    """Our training epoch over real slices (decode excluded, augmentation and loading included)."""
    patients = sorted({patient for patient, *_ in list_lgg(Path(args.data))})
    data = load_source(args.data, args.size, volumes=patients[: max(1, args.slices // 20)])
    data = data.subset(np.arange(min(args.slices, len(data))))
    loader = torch.utils.data.DataLoader(SliceDataset(data, train_augmentation()), args.batch, shuffle=True, drop_last=True)
    step = ours_step(args.width)
    step(*synthetic_batch(args.batch, args.size))  # warm-up outside the timed epoch
    step_times: list[float] = []
    start = time.perf_counter()
    for images, masks, _ in loader:
        t = time.perf_counter()
        step(images, masks)
        step_times.append(time.perf_counter() - t)
    epoch = time.perf_counter() - start
    return {"slices": len(data), "steps": len(step_times), "epoch_s": epoch, "steps_sum_s": sum(step_times),
            "overhead_pct": 100 * (epoch - sum(step_times)) / sum(step_times)}


# -- inference --------------------------------------------------------------------------------
def bench_infer(args: argparse.Namespace) -> dict:
    """Latency per level for one mode: eager fp32, our fast path (channels_last + bf16) or ONNX Runtime."""
    torch.manual_seed(0)
    model = NestedUNet(3, 1, args.width, deep_supervision=True).eval()
    if args.mode == "fast":
        model = model.to(memory_format=torch.channels_last)
    rows = {}
    for text in args.levels:
        level = parse_level(text)
        run = _level_runner(model, level, args.mode)
        row = {"params": count_parameters(model, level), "gflops": count_flops(model, level, args.size) / 1e9}
        for batch in args.batches:
            pixels = torch.randint(0, 256, (batch, 3, args.size, args.size), dtype=torch.uint8)
            times = timed(lambda: run(pixels), args.repeats, warmup=2)
            ms = statistics.median(times) * 1000 / batch
            row[f"ms_b{batch}"] = ms
            row[f"gflops_per_s_b{batch}"] = row["gflops"] / (ms / 1000)
        rows[str(level)] = row
    return {"mode": args.mode, "levels": rows}


def _level_runner(model: torch.nn.Module, level: object, mode: str) -> Callable[[torch.Tensor], object]:
    if mode == "onnx":
        import onnxruntime as ort

        from core.export import export_onnx

        path = Path(tempfile.mkdtemp()) / "level.onnx"
        export_onnx(model, {"model": {}, "preprocessing": {"input_size": 256, **NORM}}, level, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda pixels: session.run(None, {"image": pixels.float().numpy()})
    dtype = autocast_dtype(torch.device("cpu")) if mode == "fast" else None

    def run(pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = normalize(pixels, NORM["mean"], NORM["std"])
            if mode == "eager":
                x = x.contiguous()
            return predict_level(model, x, level, dtype)

    return run


def bench_upload(args: argparse.Namespace) -> dict:
    """A 256x256 PNG upload segmented at the deepest level, file bytes to mask, as the app does it."""
    model, meta = load_checkpoint(args.checkpoint)
    dtype = autocast_dtype(torch.device("cpu"))
    rng = np.random.default_rng(0)
    path = Path(tempfile.mkdtemp()) / "upload.png"
    cv2.imwrite(str(path), rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))

    def segment() -> np.ndarray:
        return segment_image(model, meta["preprocessing"], read_image(path, 3), default_level(model), dtype) > 0.5

    times = timed(segment, args.repeats, warmup=2)
    return {"checkpoint": str(args.checkpoint), "median_s": statistics.median(times), "seconds": times}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["train", "epoch", "infer", "upload"])
    p.add_argument("--impl", choices=sorted(STEPS), default="ours")
    p.add_argument("--mode", choices=["eager", "fast", "onnx"], default="fast")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--levels", nargs="+", default=["1", "2", "3", "4", ENSEMBLE])
    p.add_argument("--data", default="../shared/data/lgg_mri/kaggle_3m")
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/unetpp_lgg.pt"))
    args = p.parse_args()
    result = {"train": bench_train, "epoch": bench_epoch, "infer": bench_infer, "upload": bench_upload}[args.what](args)
    result.update(threads=torch.get_num_threads(), peak_rss_mib=peak_rss_mib())
    print("BENCH_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
