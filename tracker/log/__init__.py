"""The tracking log (SQLite), exposure, reports."""
