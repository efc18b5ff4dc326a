"""The host admin's tools: `python -m host_tools --help`."""
