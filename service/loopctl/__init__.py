"""loopctl: structural trust for AI development loops."""

__version__ = "0.1.0"
