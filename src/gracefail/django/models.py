"""No tables: one unmanaged model, the admin's handle on gracefail's report.

The Django admin lists only registered models on its index, so the report (which
reads gracefail's own event store, not Django's database) is registered through
this model (see :mod:`gracefail.django.admin`). ``managed = False`` and no
permissions: no migration, no table, nothing for ``migrate`` to do.
"""

from __future__ import annotations

from django.db import models


class Report(models.Model):
    """gracefail's report, as the admin index lists it."""

    id = models.BigAutoField(primary_key=True)

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "report"
        verbose_name_plural = "report"
