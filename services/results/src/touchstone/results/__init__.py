"""Touchstone results."""
