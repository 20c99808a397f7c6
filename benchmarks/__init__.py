"""asv benchmark suites for jitgrad (run them with ``asv run --python=same --quick``)."""
