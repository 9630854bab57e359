"""Touchstone onprem provider."""
