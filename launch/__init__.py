"""Launchers that expand experiment grids into runs."""
