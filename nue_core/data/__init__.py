"""Audio loading, manifests and batching."""
