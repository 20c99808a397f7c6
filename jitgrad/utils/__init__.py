"""Utilities (``jitgrad.utils``): ``data`` holds datasets and the DataLoader."""

from . import data
