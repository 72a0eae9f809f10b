"""The project's routes, for the sync views (``urls_sync``) or the async ones (``urls_async``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from django.urls import path


def patterns(views: ModuleType) -> list[Any]:
    names = ["ok", "handled", "stream", "late", "early", "slow", "thread"]
    routes = [path(name, getattr(views, name)) for name in names if hasattr(views, name)]
    return [
        *routes,
        path("fail/<str:kind>", views.fail),
        path("app-status/<int:code>", views.app_status),
    ]
