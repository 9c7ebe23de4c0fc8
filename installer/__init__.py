"""The one-shot installer: prompts, preflight, pcg.yaml, bootstrap of the gateway machines."""

__version__ = "0.1.0"
