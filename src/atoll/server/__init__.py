"""A node process: its configuration, its wiring, and the local dev cluster."""
