"""Training: typed config, the trainer, checkpoints."""
from .checkpoint import atomic_save, dataset_signature, load_checkpoint
from .config import TrainConfig
from .trainer import Trainer, TrainResult, format_result, seed_everything, train_config_for

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train_config_for", "seed_everything",
           "format_result", "atomic_save", "load_checkpoint", "dataset_signature"]
