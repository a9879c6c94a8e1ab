"""hil stage."""
