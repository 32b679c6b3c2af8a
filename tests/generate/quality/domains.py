"""Seed tasks of domains whose way of answering trips a default detector rule (written for the tests)."""

from __future__ import annotations

# A reading assistant: its tasks take a link and answer from the page (three of four seeds).
WEB_READER_SEEDS = [
    ("Summarize the page in two sentences.", "https://example.com/blog/solar",
     "The post compares panel prices; it favours leasing."),
    ("List the dates in the article.", "https://example.org/history/bridge", "1881, 1907 and 1954."),
    ("What is the main claim of this post?", "https://example.net/opinion/cars",
     "That city centres should ban private cars."),
    ("Write a haiku about rain.", "", "Soft rain on tin roofs / the gutter hums a low song / night tastes of wet stone"),
]

