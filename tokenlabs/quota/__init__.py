"""Rate-limit and quota counters shared by authz (requests) and extproc (tokens)."""
