"""profilestream's model package: data, item features, the LSTM profile model, training,
evaluation and the runtime that stream workers load. Importable without Kafka."""

from .artifact import Artifact, Catalogue, load_artifact, save_artifact
from .data import Dataset, Split, chronological_split, load_dataset, load_events_file, load_ml100k
from .errors import ArtifactError, DataError, ModelError
from .events import EVENT_TYPES, Event, InvalidEvent, parse_event, validate_event
from .init_random import init_random_artifact
from .lstm import ModelConfig, ProfileLSTM
from .runtime import Applied, Pending, ProfileModel
from .state import StateFormatError, UserState, pack_state, unpack_state

__all__ = [
    "Applied", "Artifact", "ArtifactError", "Catalogue", "DataError", "Dataset", "EVENT_TYPES", "Event",
    "InvalidEvent", "ModelConfig", "ModelError", "Pending", "ProfileLSTM", "ProfileModel", "Split",
    "StateFormatError", "UserState", "chronological_split", "init_random_artifact", "load_artifact",
    "load_dataset", "load_events_file", "load_ml100k", "pack_state", "parse_event", "save_artifact",
    "unpack_state", "validate_event",
]
