"""Media readers and writers: videos (PyAV), images, frame folders, GIFs, audio passthrough."""
