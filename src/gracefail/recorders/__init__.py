"""Where events go: the Recorder protocol and the recorders gracefail ships."""

from .base import Recorder
from .logging import LoggingRecorder

__all__ = ["LoggingRecorder", "Recorder"]
