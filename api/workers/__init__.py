"""Background tasks: the request-log writer and friends."""
