"""Training: typed config, the trainer, checkpoints, multi-process (torch.distributed) helpers."""
from .allocator import tuned_malloc
from .checkpoint import CheckpointError, atomic_save, dataset_signature, load_checkpoint
from .config import TrainConfig
from .runfolder import RunFolder, RunFolderError, load_run, to_json
from .distributed import DistributedContext, init_distributed, run_distributed
from .trainer import (Trainer, TrainingDiverged, TrainResult, format_result, seed_everything,
                      train_config_for)

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train_config_for", "seed_everything",
           "format_result", "atomic_save", "load_checkpoint", "dataset_signature",
           "DistributedContext", "init_distributed", "run_distributed", "tuned_malloc",
           "CheckpointError", "TrainingDiverged", "RunFolder", "RunFolderError", "load_run", "to_json"]
