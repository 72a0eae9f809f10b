"""Async views (served under ASGI)."""

from __future__ import annotations

import asyncio
import threading

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from tests.apps import common
from tests.apps.django_project import views


async def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello", content_type="text/plain")


async def fail(request: HttpRequest, kind: str) -> HttpResponse:
    common.fail(kind)
    return HttpResponse("unreachable")


async def handled(request: HttpRequest) -> HttpResponse:
    raise common.AppHandled("the app knows this one")


async def app_status(request: HttpRequest, code: int) -> HttpResponse | StreamingHttpResponse:
    return views.status_response(request, code, common.aapp_body)


async def stream(request: HttpRequest) -> StreamingHttpResponse:
    gate = request.GET.get("gate")
    return StreamingHttpResponse(common.achunks(gate), content_type="text/plain")


async def late(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(common.alate(), content_type="text/plain")


async def early(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(common.aearly(), content_type="text/plain")


async def slow(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(30)
    return HttpResponse("too late")


async def thread(request: HttpRequest) -> HttpResponse:
    """Which thread runs this async view (the event loop's, if no middleware forced a hop)."""
    return HttpResponse(str(threading.get_ident()))
