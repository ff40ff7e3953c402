"""MACP protocol: the JSON Schemas of tasks, events, results and config, and their validator."""
