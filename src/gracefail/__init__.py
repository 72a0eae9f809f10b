"""gracefail: turn an upstream outage into a page users can live with.

Public face: :class:`Config`, :class:`Brand`, :class:`RetryPolicy`,
:class:`UpstreamError` and :class:`Overload` (``Config.overload``). The adapters
live in ``gracefail.asgi``, ``gracefail.wsgi``, ``gracefail.flask`` and
``gracefail.django``; importing this package imports no web framework and no
HTTP client.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import Brand, Config, ConfigError, RetryPolicy
from .errors import UpstreamError

if TYPE_CHECKING:
    from .overload import Overload

__all__ = [
    "Brand",
    "Config",
    "ConfigError",
    "Overload",
    "RetryPolicy",
    "UpstreamError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Overload is loaded on first use: most apps never shed load (PEP 562).
    if name == "Overload":
        from .overload import Overload

        return Overload
    raise AttributeError(f"module 'gracefail' has no attribute {name!r}")
