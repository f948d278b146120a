"""Batch detection over folders of images (`weedscan batch`), locally or on a Ray cluster."""
