"""Touchstone shared library."""
