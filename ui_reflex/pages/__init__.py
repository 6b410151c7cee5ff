"""One module per dashboard page: its State class and its components."""
