"""Small data sets the package generates itself (no downloads)."""
