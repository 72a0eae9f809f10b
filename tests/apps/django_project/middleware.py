"""The app's own exception handling: it answers AppHandled itself (gracefail must let it)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from tests.apps import common


class AppErrorMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, common.AppHandled):
            return HttpResponse(common.HANDLED, status=418)
        return None
