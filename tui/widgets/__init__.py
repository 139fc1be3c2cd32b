"""The TUI's widgets: one per view, and the status bar."""
