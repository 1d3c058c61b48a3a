"""The shared training engine: one loop, one Task seam, and the pieces around it."""

from trainhub.engine.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointStore,
    load_state,
    load_weights,
    save_state,
    save_weights,
)
from trainhub.engine.loop import FitConfig, FitResult, TrainState, evaluate, fit, train_epoch
from trainhub.engine.runtime import Runtime, move_to_device, seed_everything, unwrap_model
from trainhub.engine.stopping import EarlyStopping, monitor_mode
from trainhub.engine.task import (
    DirectedMetrics,
    EpochLogs,
    NamedMetrics,
    OwnBackward,
    Stateful,
    StepOutput,
    SyncedMetrics,
    Task,
)

__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "Checkpointer",
    "DirectedMetrics",
    "EarlyStopping",
    "EpochLogs",
    "FitConfig",
    "FitResult",
    "NamedMetrics",
    "OwnBackward",
    "Runtime",
    "Stateful",
    "StepOutput",
    "SyncedMetrics",
    "Task",
    "TrainState",
    "evaluate",
    "fit",
    "load_state",
    "load_weights",
    "monitor_mode",
    "move_to_device",
    "save_state",
    "save_weights",
    "seed_everything",
    "train_epoch",
    "unwrap_model",
]
