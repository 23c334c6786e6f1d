"""rtfuse: real-time infrared + visible video fusion."""

__version__ = "0.1.0"
