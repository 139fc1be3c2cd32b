"""SQLite implementation of the Store."""
