"""Measuring a trained model: the field's metrics on a split, and per-module profiles of time, memory and FLOPs."""
