"""Sync views (served under WSGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from tests.apps import common


def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello", content_type="text/plain")


def fail(request: HttpRequest, kind: str) -> HttpResponse:
    common.fail(kind)
    return HttpResponse("unreachable")


def handled(request: HttpRequest) -> HttpResponse:
    raise common.AppHandled("the app knows this one")


def app_status(request: HttpRequest, code: int) -> HttpResponse | StreamingHttpResponse:
    return status_response(request, code, common.app_body)


def status_response(
    request: HttpRequest,
    code: int,
    streamed: Callable[[int], Iterator[bytes] | AsyncIterator[bytes]],
) -> HttpResponse | StreamingHttpResponse:
    """The app's own ``code`` with a cookie; ``?stream=1``: the body ``streamed(code)``."""
    response: HttpResponse | StreamingHttpResponse
    if request.GET.get("stream") == "1":
        response = StreamingHttpResponse(streamed(code), status=code)
    else:
        response = HttpResponse(f"app said {code}", status=code, content_type="text/plain")
    response.set_cookie("session", "abc")
    return response


def stream(request: HttpRequest) -> StreamingHttpResponse:
    gate = request.GET.get("gate")
    return StreamingHttpResponse(common.chunks(gate), content_type="text/plain")


def late(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(common.late(), content_type="text/plain")


def early(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(common.early(), content_type="text/plain")


def server_error(request: HttpRequest) -> HttpResponse:
    return HttpResponse(common.APP_500, status=500)
