"""gracefail's benchmarks: ``python -m benchmarks.run_all`` (``make bench``); see README.md."""
