"""Errors of placement (`atoll.placement`). Pure: no I/O."""

from __future__ import annotations

from atoll.base.errors import AtollError


class PlacementError(AtollError, ValueError):
    """A pool cannot be placed on the devices given (too few, or an invalid pool)."""
