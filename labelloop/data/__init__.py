"""Package data: the default labelloop.yaml, the dvc.yaml release-stage template and the
hand-made demo review (Label Studio JSON export)."""
