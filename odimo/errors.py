# SPDX-License-Identifier: Apache-2.0
"""Errors that odimo reports to the user as one line (entry points turn them into exit code 2)."""


class OdimoError(Exception):
    """A problem with the user's input (config, files, data) that the user can fix."""


class ConfigError(OdimoError):
    """An override or config value that cannot work."""


class MappingError(OdimoError):
    """A channel mapping that does not fit the network."""


class DatasetNotFoundError(OdimoError):
    """Dataset files are missing; the message says where they were expected and how to get them."""


class CheckpointError(OdimoError):
    """A checkpoint that is missing, corrupt, or belongs to another network."""


class TrainingDivergedError(OdimoError):
    """The loss became NaN or infinite."""
