"""The report inside the Django admin: read-only, for staff, linked from the admin index.

With ``django.contrib.admin`` and ``gracefail.django`` in ``INSTALLED_APPS``, the admin
index shows *gracefail > Report*; it renders gracefail's HTML report of
``GRACEFAIL["store"]`` for a window chosen on the page (``?since=7d``, ``until``,
``route``, ``compare=previous``, ``gap``; the form sets them). Every active staff user
may see it (the admin itself lets in no one else); nothing can be added, changed or
deleted. The window is checked and bounded (at most 92 days) before the store is
read. Set ``GRACEFAIL_ADMIN_REPORT = False`` to leave it out of the admin.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.safestring import mark_safe

from ..report.web import REPORT_CSS, report_page
from .conf import get_config
from .models import Report

__all__ = ["ReportAdmin"]

TITLE = "gracefail report"


class ReportAdmin(admin.ModelAdmin):
    """The report page; no add, change, delete or history views."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(user.is_active and user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The report for the window the query string asks for."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        result = report_page(get_config().store, request.GET)
        context = {
            **self.admin_site.each_context(request),
            "title": TITLE,
            "opts": self.opts,
            # Both are gracefail's own markup: every value in them is escaped.
            "report_css": mark_safe(REPORT_CSS),  # noqa: S308 - a constant of gracefail's
            "report_html": mark_safe(result.fragment(TITLE)),  # noqa: S308 - values escaped
            "csp_nonce": getattr(request, "csp_nonce", None),
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "gracefail/admin/report.html", context, status=result.status
        )


if getattr(settings, "GRACEFAIL_ADMIN_REPORT", True):
    admin.site.register(Report, ReportAdmin)
