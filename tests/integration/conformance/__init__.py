"""Conformance suites of the store protocols: one module per protocol, each run on memory,
a SQLite file and PostgreSQL, with the store typed as that protocol."""
