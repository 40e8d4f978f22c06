"""Solar-tracking controller for axion helioscopes.

The core (ephemeris, envelope, planner, pointing, control, machine) is pure:
functions of time and state with time injected.  I/O lives in ``drivers``,
``tracker.log.store`` and the daemon.
"""

__version__ = "0.1.0"
