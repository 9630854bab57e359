"""The touchstone command line."""
