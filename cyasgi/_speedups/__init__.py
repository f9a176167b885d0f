"""Compiled twins of the hot-path modules. Import them through their selectors, never directly."""
