"""Filters, one per module."""
