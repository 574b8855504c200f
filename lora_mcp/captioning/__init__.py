"""Captioning: the Captioner interface, JoyCaption / Ollama / OpenAI-compatible / template backends, the worker."""
