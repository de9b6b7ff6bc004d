"""Root exception of the model package; subclasses name what went wrong and how to fix it."""

__all__ = ["ModelError", "ArtifactError", "DataError"]


class ModelError(Exception):
    """Base class of every error raised by `model`."""


class ArtifactError(ModelError):
    """A model artifact that is missing, corrupt, or does not fit this code."""


class DataError(ModelError):
    """A dataset that cannot be found or read."""
