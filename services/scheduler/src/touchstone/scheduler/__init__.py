"""Touchstone scheduler."""
