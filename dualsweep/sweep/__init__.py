"""Sweeps: trial folders and tables, planning, and the Ray Tune runner (imported lazily)."""
