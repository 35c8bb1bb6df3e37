"""Evaluation: metrics, decision thresholds, ensembles and summary tables (no TensorFlow, no MLflow)."""
