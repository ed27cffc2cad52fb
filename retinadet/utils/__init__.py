"""Utilities: synthetic batches and environment information."""
