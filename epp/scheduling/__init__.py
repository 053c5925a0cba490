"""Scheduling: filters narrow the candidates, weighted scorers rate them, a picker ranks them (GIE's framework)."""
