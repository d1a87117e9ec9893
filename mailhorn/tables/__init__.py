"""Lookup tables (``type:name``) behind one interface; see :mod:`mailhorn.tables.base`."""
