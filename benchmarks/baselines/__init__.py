"""Reference servers the benchmark compares ferry with (not part of the ferry package)."""
