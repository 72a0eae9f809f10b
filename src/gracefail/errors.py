"""The exception an app raises to say "my upstream failed"."""

from __future__ import annotations

__all__ = ["UpstreamError"]


class UpstreamError(Exception):
    """Raise this from a view when a service behind the app failed.

    ``status`` is 502 (the upstream answered badly or not at all) or 504 (it did
    not answer in time). ``upstream`` names the service for logs and metrics and
    ``detail`` explains; neither is shown to users unless ``Config.debug`` is on.

    >>> raise UpstreamError(504, upstream="payments", detail="no answer in 3 s")
    Traceback (most recent call last):
    gracefail.errors.UpstreamError: 504 from payments: no answer in 3 s
    """

    def __init__(self, status: int = 502, upstream: str | None = None, detail: str | None = None):
        if status not in (502, 504):
            raise ValueError(
                f"gracefail: UpstreamError(status={status!r}) is not valid; expected 502 or 504"
            )
        self.status = status
        self.upstream = upstream
        self.detail = detail
        super().__init__(status, upstream, detail)

    def __str__(self) -> str:
        where = f" from {self.upstream}" if self.upstream else ""
        return f"{self.status}{where}" + (f": {self.detail}" if self.detail else "")

    def __reduce__(self) -> tuple[type[UpstreamError], tuple[int, str | None, str | None]]:
        return (type(self), (self.status, self.upstream, self.detail))
