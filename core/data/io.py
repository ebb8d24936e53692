"""Reading single 2D images and masks with clear errors."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float images to uint8 by their own min..max range."""
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float64)
    if not np.isfinite(image).all():
        raise DataError("image contains NaN or infinite values")
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(image)
    return np.round(scaled).astype(np.uint8)


def decode_image(data: bytes | np.ndarray, channels: int = 3, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes to ``(H, W, channels)`` uint8 in RGB order."""
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
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
        data = np.frombuffer(Path(path).read_bytes(), np.uint8)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
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
