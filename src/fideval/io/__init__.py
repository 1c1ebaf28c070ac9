"""Files: statistics (.npz with provenance), atomic writes, weights."""
