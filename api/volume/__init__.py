"""/volume: the Cinder v3 subset (volumes, limits, quota sets) in front of the cells' conductors."""
