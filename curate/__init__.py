"""curate: turn raw text corpora into clean, private, fair instruction datasets."""

__version__ = "0.1.0"
