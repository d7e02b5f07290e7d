"""Batch runners that compute results and checkpoint them through any Saver."""

__all__: list[str] = []
