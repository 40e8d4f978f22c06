"""The control tick: small parts called in one order by the engine."""
