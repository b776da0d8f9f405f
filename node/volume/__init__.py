"""The volume worker (topic `volume.<host>`): storage backends make the bits,
export targets serve them to compute hosts."""
