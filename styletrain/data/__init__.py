"""Training data: what a content source is (content_sources), folders, HF datasets, video frames, crops and batch
mixing (stills), real video pairs (pairs) and the DataModule (module); the style image (images)."""
