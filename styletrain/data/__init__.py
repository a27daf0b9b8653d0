"""Training data: content images (folders, HF datasets, video frames), motion pairs and the DataModule."""
