"""On the GPU machine: rebuild a 128 px ``kaggle_3m`` folder from ``pack_lgg.py``'s tar (lossless TIFFs).

    python3 bench/device/unpack_lgg.py .device/lgg128.tar /tmp/lgg/kaggle_3m
"""
from __future__ import annotations

import gzip
import json
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np


def main(tar_path: str, out: str) -> int:
    tar, root = tarfile.open(tar_path), Path(out)

    def read(name: str) -> bytes:
        member = tar.extractfile(name)
        assert member is not None, name
        return member.read()

    index = json.loads(read("index.json"))
    n, h, w, _ = index["shape"]
    masks = np.unpackbits(np.frombuffer(gzip.decompress(read("masks.bits.gz")), np.uint8))[: n * h * w]
    masks = masks.reshape(n, h, w)
    for k, (patient, _, image_name, mask_name) in enumerate(index["entries"]):
        (root / patient).mkdir(parents=True, exist_ok=True)
        image = cv2.imdecode(np.frombuffer(read(f"{k}.webp"), np.uint8), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(root / patient / image_name), image)
        cv2.imwrite(str(root / patient / mask_name), masks[k] * 255)
    print(f"unpacked {n} slices to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
