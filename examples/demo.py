"""Placeholder demo, replaced once the savers land."""

import zsaver

print(f"zsaver {zsaver.__version__} installed")
