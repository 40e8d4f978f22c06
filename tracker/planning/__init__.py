"""Tracking windows inside the envelope."""
