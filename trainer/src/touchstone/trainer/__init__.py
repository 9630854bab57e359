"""Touchstone reference trainer."""
