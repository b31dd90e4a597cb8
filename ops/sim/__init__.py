"""Simulated traffic: shoppers that call the API and act on its lists, and the demos built on them."""
