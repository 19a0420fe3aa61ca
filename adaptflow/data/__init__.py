"""Data on disk: the demo domains, scanning into a manifest, the decoded cache, batches."""
