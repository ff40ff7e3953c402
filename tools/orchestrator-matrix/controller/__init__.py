"""MACP controller package: the controller loop, the mosaic-macp CLI and TASKS.md sync."""
