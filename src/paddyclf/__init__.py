"""paddyclf: rice leaf-disease classification with lightweight attention CNNs."""

__version__ = "0.1.0"
