"""Training, export and evaluation tooling. Imports torch: never import from the serving path."""
