"""Data sources (Kaggle LGG, images/masks folder, NIfTI datasets, synthetic), decoding cache, split and dataset."""
from core.data.augmentation import AUGMENTATIONS, train_augmentation
from core.data.dataset import EpochSampler, SliceDataset
from core.data.errors import DataError
from core.data.io import decode_image, read_image, read_mask
from core.data.sources import (SYNTHETIC, channels_and_classes, data_folder, input_size, intensity_windows,
                               label_names, load_source, split_volumes)
from core.data.slices import SliceSet

__all__ = [
    "AUGMENTATIONS", "SYNTHETIC", "DataError", "EpochSampler", "SliceDataset", "SliceSet", "channels_and_classes",
    "data_folder", "decode_image", "input_size", "intensity_windows", "label_names", "load_source", "read_image",
    "read_mask", "split_volumes", "train_augmentation",
]
