"""``python -m gracefail`` is the ``gracefail`` command."""

from .cli import main

main()
