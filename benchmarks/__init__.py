"""ferry's serving benchmark (issue 4, Performance): ``make bench`` writes results.md."""
