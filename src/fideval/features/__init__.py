"""Image preprocessing profiles and feature extractors."""
