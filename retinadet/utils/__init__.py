"""Utilities: distributed helpers (comm), environment information, drawing, synthetic batches."""
