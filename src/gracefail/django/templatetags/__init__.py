"""gracefail's Django template tags (``{% load gracefail %}``)."""
