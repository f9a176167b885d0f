"""Servers the benchmark runs that are not installed packages."""
