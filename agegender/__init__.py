"""agegender: real-time age and gender estimation from faces."""

__version__ = "0.1.0"
