"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class SpeechmpqError(Exception):
    """A problem with the user's input (file, model, config) rather than a bug in speechmpq."""


class AudioError(SpeechmpqError):
    """Audio that cannot be read or used."""


class ModelError(SpeechmpqError):
    """A model directory or file that cannot be loaded."""
