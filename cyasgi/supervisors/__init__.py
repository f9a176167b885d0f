"""Process supervisors: --workers (Multiprocess) and --reload (ChangeReload)."""
