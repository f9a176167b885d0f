"""The public API, the CLI and its settings, the build, the perf harness."""
