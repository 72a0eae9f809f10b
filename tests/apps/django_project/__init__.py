"""A Django project with the routes of ``tests.apps.common``: sync views (``urls_sync``)
for WSGI and async views (``urls_async``) for ASGI."""
