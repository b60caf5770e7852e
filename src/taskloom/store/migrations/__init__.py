"""Alembic migrations of the taskloom store (run through `taskloom.store.migrate`)."""
