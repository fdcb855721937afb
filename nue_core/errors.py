"""Errors with messages meant for the user: each names the file, key or component at fault."""


class NueError(Exception):
    """Base class of every error nue-asr raises on purpose."""


class ConfigError(NueError, ValueError):
    """A configuration or options value is invalid."""


class UnknownComponentError(ConfigError, KeyError):
    """A component name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(NueError):
    """Two plugins registered the same name."""


class PluginError(NueError):
    """A plugin failed to import, register or build."""


class CheckpointError(NueError):
    """A model folder or weights file cannot be read."""
