"""The one-shot installer: prompts, preflight, pcg.yaml, bootstrap of the gateway machines."""
