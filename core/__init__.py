"""UNet++ Studio core library: models, data, losses, metrics, training, checkpoints and CLIs."""
from core.checkpoint import CheckpointError, load_checkpoint
from core.models import NestedUNet, UNet, build_model

__all__ = ["CheckpointError", "NestedUNet", "UNet", "build_model", "load_checkpoint"]
