"""Command-line tools and file-level work: conversion, batch planning, executors and live streams."""
