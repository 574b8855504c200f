"""Training folders: inventory, problems with fixes, aspect buckets, caption files."""
