"""The exceptions omni raises. Every message says what was wrong, where, and what to do about it."""


class OmniError(Exception):
    """Base class of every error omni raises on purpose."""


class ConfigError(OmniError, ValueError):
    """A config.json (or a config built in code) is missing a field, has a wrong type or impossible values."""


class CheckpointError(OmniError):
    """A checkpoint directory or safetensors file is missing, corrupt, unsafe or does not fit the model."""


class InputError(OmniError, ValueError):
    """Inputs to a processor or model are malformed (wrong shape, unreadable media, count mismatches...)."""


class MediaError(InputError):
    """An image, audio clip or video could not be read or is unusable (empty, corrupt, NaN...)."""
