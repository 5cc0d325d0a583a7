"""Atoll: an S3-compatible, erasure-coded, strongly consistent distributed store.

See shared/DESIGN.md for the map of the layers; this package holds all of them.
"""

__version__ = "0.1.0"
