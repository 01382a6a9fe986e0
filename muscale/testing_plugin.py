"""pytest plugin for muscale (being written by the coord-check engineer)."""
