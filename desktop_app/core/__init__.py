"""Plain-Python core: configs, events, the SQLite store, workspace paths, data formats.

Nothing in this package imports Qt or torch (tests/test_layering.py enforces it).
"""
