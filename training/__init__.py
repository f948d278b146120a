"""weedscan's trainer side: datasets, training, export and evaluation.

Ultralytics and torch are imported lazily, inside the functions that need them, so that the CLI
(and `weedscan serve`) start without them.
"""
