"""Benchmark evaluations (``procedge eval NAME``): each module has ``main(argv)``."""
