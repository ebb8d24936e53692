"""2D images (PNG, JPG, TIFF, BMP) and multi-page TIFF stacks."""
from __future__ import annotations

import cv2
import numpy as np

from core.data.errors import DataError
from core.data.intensity import Window, to_uint8
from core.data.io import decode_image, image_header, to_channels
from core.scans.scan import Scan, channels_note, check_size, intensity_note


def read_image_scan(name: str, data: bytes, channels: int, window: Window | None = None) -> Scan:
    """A 2D image, or a TIFF of several pages as a stack."""
    header = image_header(data, name)  # checked once, for the stack and the single-image path alike
    if name.lower().endswith((".tif", ".tiff")) and header[2] > 1:
        pages = _tiff_pages(name, data, header)
        volume = to_uint8(np.stack(pages), window)
        slices = np.stack([to_channels(p, channels, name) for p in volume])
        return Scan(name, "tiff stack", slices, intensity_note=intensity_note(pages[0].dtype),
                    channels_note=channels_note(pages[0], channels))
    image = decode_image(data, channels, name, header_checked=True)
    return Scan(name, "image", image[None], channels_note="")


def _tiff_pages(name: str, data: bytes, header: tuple[int, int, int]) -> list[np.ndarray]:
    """The pages of a TIFF stack whose ``image_header`` (which checks every page's size) is ``header``."""
    width, height, count = header
    check_size(name, (count, height, width))
    try:
        ok, pages = cv2.imdecodemulti(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # libtiff rejects some corrupt headers by raising
        ok, pages = False, []
    if not ok or not pages:
        raise DataError(f"{name}: not a readable TIFF")
    shapes = {p.shape for p in pages}
    if len(shapes) > 1:
        raise DataError(f"{name}: the TIFF's pages differ in size ({sorted(shapes)}); a stack needs equal pages")
    check_size(name, (len(pages), *pages[0].shape))
    return [cv2.cvtColor(p[..., :3], cv2.COLOR_BGR2RGB) if p.ndim == 3 and p.shape[2] >= 3 else p for p in pages]
