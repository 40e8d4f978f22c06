"""The control law and the state machine: pure functions of state and time."""
