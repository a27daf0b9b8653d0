"""Stylizing tensors: the Stylizer, its backends, batching, precision, stroke scale and the consistency stage."""
