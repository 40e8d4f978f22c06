"""The mount's geometry: axis interface, frames, envelope, pointing model and its fit."""
