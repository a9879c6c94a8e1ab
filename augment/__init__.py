"""augment stage."""
