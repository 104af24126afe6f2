"""The speed planner: predicted seconds per step by phase, tokens/s/GPU and run wall time of a cell, from the
work its verl command asks of one GPU and constants fitted on measured steps (work, model, fit, predict)."""
