"""The cell database: engine setup, schema, and the Core queries cell services use.

Only cell services (conductor, scheduler) open it; nodes go through the conductor.
"""
