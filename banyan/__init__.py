"""banyan package."""
