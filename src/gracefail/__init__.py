"""gracefail: turn an upstream outage into a page users can live with.

Public face: :class:`Config`, :class:`Brand`, :class:`RetryPolicy`,
:class:`UpstreamError`. The adapters live in ``gracefail.asgi``,
``gracefail.wsgi``, ``gracefail.flask`` and ``gracefail.django``; importing
this package imports no web framework and no HTTP client.
"""

from ._version import __version__
from .config import Brand, Config, ConfigError, RetryPolicy
from .errors import UpstreamError

__all__ = ["Brand", "Config", "ConfigError", "RetryPolicy", "UpstreamError", "__version__"]
