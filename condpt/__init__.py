"""condpt: conditional pretraining against self-fulfilling misalignment."""

__version__ = "0.1.0"
