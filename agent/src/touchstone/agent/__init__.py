"""Touchstone agent."""
