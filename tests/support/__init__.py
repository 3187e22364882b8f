"""Helpers the tests share (no test module imports another): data fixtures, MLflow stores and servers, sweeps."""
