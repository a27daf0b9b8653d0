"""Lowest layer: errors, atomic writes, hashing, colour maths, stage clocks and device choice. Imports nothing else from
the package."""
