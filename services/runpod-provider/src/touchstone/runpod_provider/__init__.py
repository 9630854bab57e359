"""Touchstone runpod provider."""
