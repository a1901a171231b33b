"""Personify360: the tables subsync reads and writes, the rows it derives, and the writers."""
