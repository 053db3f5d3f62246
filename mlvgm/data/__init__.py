"""Where the trainer's batches come from: Continuous Sampling and the real-data loaders (sources, step_graph, overlap,
dali, ffcv), and exporting a generator's images as a dataset for them (`python -m mlvgm.data.export`)."""
