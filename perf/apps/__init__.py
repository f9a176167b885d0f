"""The workload apps every server in the benchmark serves (servers import them with this folder on the path)."""
