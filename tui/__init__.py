"""banyan-tui: the terminal UI (Textual), live on the event feed."""
