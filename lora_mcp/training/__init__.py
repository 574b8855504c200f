"""Training: the typed run description, VRAM tiers, AI-Toolkit YAML, and how finished runs are reported."""
