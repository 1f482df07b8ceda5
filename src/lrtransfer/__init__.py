"""lrtransfer: learning-rate transfer across widths, and why it works (Kosson et al. 2025)."""

__version__ = "0.1.0"
