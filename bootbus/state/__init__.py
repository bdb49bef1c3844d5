"""Snapshots of the whole bus, for re-exec across upgrades and root pivots."""
