"""Devices: the registry of client certificates seen over mTLS (one record per certificate,
its status and the user it maps to), the mapping rules, and their System Log events."""
