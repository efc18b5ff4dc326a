"""The board protocol: what host_tools, pipelines and the worker share (the board, its views, claims, folds, refs, records, states, and git)."""
