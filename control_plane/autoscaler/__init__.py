"""Autoscaling: ``decisions`` holds the pure scaling policy; the loop that applies it to a pool
through a provider comes with the control-plane wiring."""
