"""Reading single 2D images and masks with clear errors."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.data.errors import DataError
from core.data.intensity import to_uint8

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
IMAGE_FORMATS = {"PNG", "JPEG", "MPO", "TIFF", "BMP", "DIB"}  # as Pillow names them
MAX_IMAGE_PIXELS = 25_000_000  # per 2D image or TIFF page; checked in the header, before any decoding


def image_header(data: bytes, source: str = "image") -> tuple[int, int, int]:
    """``(width, height, pages)`` that a PNG, JPEG, TIFF or BMP file declares, read without decoding pixels.

    ``DataError`` naming ``source`` for other or unreadable data, zero-sized images, and images
    over ``MAX_IMAGE_PIXELS`` per page (a decompression bomb declares a huge size in a tiny file).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                kind, sizes = image.format, [image.size]
                for page in range(1, getattr(image, "n_frames", 1) if kind == "TIFF" else 1):
                    image.seek(page)  # reads that page's header only
                    sizes.append(image.size)
        except Image.DecompressionBombError:  # Pillow's own, higher limit
            raise DataError(f"{source}: declares a size over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels") from None
        except Exception:  # Pillow raises many types for data that is not an image
            kind = None
    if kind not in IMAGE_FORMATS:
        raise DataError(f"{source}: not a readable image (PNG, JPG, TIFF or BMP expected)")
    if kind == "PNG" and not _png_chunks_fit(data):
        raise DataError(f"{source}: a broken PNG (a chunk declares more bytes than the file holds)")
    for width, height in sizes:
        if width * height == 0:
            raise DataError(f"{source}: the image has no pixels ({width}×{height})")
        if width * height > MAX_IMAGE_PIXELS:
            raise DataError(
                f"{source}: {width}×{height} pixels is over the limit of {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels")
    return (*sizes[0], len(sizes))


def to_channels(image: np.ndarray, channels: int, source: str) -> np.ndarray:
    """Make an ``(H, W)`` or ``(H, W, C)`` RGB image ``(H, W, channels)``.

    Grey images are repeated to 3 channels; colour images become grey for 1 channel; an alpha
    channel is dropped.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    if image.shape[2] == channels:
        return image
    if image.shape[2] == 1:
        return np.repeat(image, channels, axis=2)
    if channels == 1 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    raise DataError(f"{source}: has {image.shape[2]} channels; the model expects {channels}")


def _png_chunks_fit(data: bytes) -> bool:
    """Whether every PNG chunk's declared length fits in the file.

    OpenCV allocates what a chunk declares before reading it: 150 bytes declaring a 2 GiB chunk
    would cost 2 GiB of memory.
    """
    pos = 8  # after the signature
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if pos + 12 + length > len(data):
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            break
        pos += 12 + length  # length, type, data, CRC
    return True


def imdecode(data: bytes) -> np.ndarray | None:
    """``cv2.imdecode`` unchanged (BGR order), or None for data it cannot decode; check ``image_header`` first."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # some corrupt files raise instead of returning None
        return None


def decode_image(data: bytes, channels: int = 3, source: str = "image", header_checked: bool = False) -> np.ndarray:
    """Decode encoded image bytes to ``(H, W, channels)`` uint8 in RGB order.

    The header is checked first (``image_header``) unless the caller has done so already.
    """
    if not header_checked:
        image_header(data, source)
    image = imdecode(data)
    if image is None or image.size == 0:
        raise DataError(f"{source}: not a readable image (PNG, JPG, TIFF or BMP expected)")
    if image.ndim == 3 and image.shape[2] >= 3:  # OpenCV decodes colour as BGR(A)
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    try:
        image = to_uint8(image)
    except DataError as err:
        raise DataError(f"{source}: {err}") from None
    return to_channels(image, channels, source)


def read_image(path: Path, channels: int = 3) -> np.ndarray:
    """Read an image file as ``(H, W, channels)`` uint8 RGB; ``DataError`` naming the file if it can't."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    return decode_image(data, channels, str(path))


def read_mask(path: Path, num_classes: int = 1) -> np.ndarray:
    """Read a mask as ``(H, W)`` uint8 class indices.

    Binary masks may hold {0, 255} or {0, 1}; multi-class masks hold indices 0..num_classes-1.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    image_header(data, str(path))
    mask = imdecode(data)
    if mask is None or mask.size == 0:
        raise DataError(f"{path}: not a readable mask image")
    if mask.ndim == 3:
        if not all((mask[..., c] == mask[..., 0]).all() for c in range(1, min(3, mask.shape[2]))):
            raise DataError(f"{path}: mask has colour channels that differ; a grey mask is expected")
        mask = mask[..., 0]
    values = np.unique(mask)
    if num_classes == 1:
        if not set(values.tolist()) <= {0, 1, 255}:
            shown = ", ".join(str(v) for v in values[:8])
            raise DataError(f"{path}: mask is not binary (values {shown}...); expected 0 and 255 (or 0 and 1)")
        return (mask > 0).astype(np.uint8)
    if values.max() >= num_classes:
        raise DataError(f"{path}: mask has class index {values.max()} but the model has {num_classes} classes")
    return mask.astype(np.uint8)
