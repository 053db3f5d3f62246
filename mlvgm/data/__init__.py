"""Data on disk: exporting a generator's images as a dataset (`python -m mlvgm.data.export`)."""
