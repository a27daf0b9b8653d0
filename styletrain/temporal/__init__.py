"""Temporal stability: synthetic motion, optical flow, the temporal loss and warping error, the validation callback."""
