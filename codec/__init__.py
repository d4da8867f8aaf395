"""Bitlens engine: the learned codec, rate matching, anchors, metrics. Imports no Qt."""
