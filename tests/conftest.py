"""Strict, reproducible settings for the whole suite.

float64 on (the Kalman references need it), rank promotion raises so that accidental
broadcasting between mismatched shapes is an error, and hypothesis runs a bounded number of
examples without deadlines (the first call of each test includes JAX compilation).
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

from hypothesis import settings  # noqa: E402

settings.register_profile("assimilax", max_examples=15, deadline=None, derandomize=True)
settings.load_profile("assimilax")
