"""Sun position, time scales and their data sources (IERS, leap seconds, ephemeris)."""
