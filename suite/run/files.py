"""The files of one cell's directory (`<out>/<full_id>/`), named once."""

RESULT_FILE = "result.json"  # the cell's result (suite/results/schema.py)
LOG_FILE = "log.txt"  # verl's stdout and stderr, with the runner's own lines
METRICS_FILE = "metrics.jsonl"  # verl's file logger, unless the cell names another path
VALIDATION_DIR = "validation"
CELL_FILE = "cell.json"  # the planned cell, as the in-cell runner reads it
