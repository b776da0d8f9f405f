"""The cell scheduler: pure filters and weighers, atomic claims in the cell DB."""
