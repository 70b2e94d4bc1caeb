"""Placeholder; replaced by the activation hook."""
