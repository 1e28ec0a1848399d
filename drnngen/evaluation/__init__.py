"""Evaluation of trained nets on the test split: one metric function, the field's
baselines (POP, S-POP, item-kNN) on the same samples, and reports of a tuning run."""
