"""`compare`: runs and sweeps side by side, as a table of their metrics and one figure of their curves.
"""
from __future__ import annotations

def compare():
    raise NotImplementedError
