"""Benchmarks of simsmtp: run each with ``python -m benchmarks.<name>`` from the project root."""
