"""Composition root and the service: daemon, HTTP API, Alpaca, auth, client, dry run."""
