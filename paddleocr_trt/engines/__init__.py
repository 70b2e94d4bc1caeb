"""Engines as plug-ins: one folder per engine behind one contract (``contract.py``), found by
name in ``registry.py``. Nothing is imported here: an engine loads when it is first asked for.
"""
