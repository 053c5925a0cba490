"""Pickers, one per module."""
