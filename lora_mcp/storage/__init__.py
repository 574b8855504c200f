"""The S3-compatible artifact store: LoRA export, dataset import, and export on success (the `storage` extra)."""
