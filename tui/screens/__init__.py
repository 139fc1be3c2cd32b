"""The TUI's modal screens: submit form, confirmation, help."""
