"""Pack the LGG set for a GPU machine reached through the ``device`` tool (64 MiB may travel per call).

    python bench/device/pack_lgg.py --data ../shared/data/lgg_mri/kaggle_3m      # -> .device/lgg128.tar (~44 MB)

The slices are stored exactly as ``load_lgg(size=128)`` decodes them (the training size of the
default recipe): RGB as lossless WebP, masks as packed bits. ``unpack_lgg.py`` on the GPU machine
writes them back as a ``kaggle_3m`` folder of 128 px TIFFs that decodes to the same arrays
(checked here before writing). ``.device/`` is ignored by git: never commit the data.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from core.data.lgg import list_lgg, load_lgg  # noqa: E402

SIZE = 128


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=ROOT / ".device" / "lgg128.tar")
    args = p.parse_args()
    entries = list_lgg(args.data)
    slices = load_lgg(args.data, SIZE)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.out, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("index.json", json.dumps({"entries": [[p, n, i.name, m.name] for p, n, i, m in entries],
                                      "shape": list(slices.images.shape)}).encode())
        add("masks.bits.gz", gzip.compress(np.packbits(slices.masks > 0).tobytes(), 9))
        for k, image in enumerate(slices.images):
            ok, data = cv2.imencode(".webp", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, 101])
            decoded = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            if not ok or not np.array_equal(decoded, image):
                raise SystemExit(f"{entries[k][2]}: WebP round trip is not lossless here")
            add(f"{k}.webp", data.tobytes())
    print(f"{args.out}: {len(entries)} slices, {args.out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
