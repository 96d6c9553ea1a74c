"""verval: verification and validation of Indonesia's social-assistance registry."""

__version__ = "0.1.0"
