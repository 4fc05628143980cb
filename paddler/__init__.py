"""Paddler: serve LLMs from a fleet of llama.cpp agents behind one OpenAI-compatible API."""

__version__ = "0.1.0"
