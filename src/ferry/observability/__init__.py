"""What an operator sees of a running server: Prometheus metrics and JSON logs."""
