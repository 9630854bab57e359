"""Touchstone submission service."""
