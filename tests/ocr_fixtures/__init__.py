"""Helpers for the OCR tests: a local HTTP server, a network guard, image bytes."""
