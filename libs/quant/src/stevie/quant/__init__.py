"""Stevie's pure maths: the order book twin, features, volatility, smile, bandit, sizing, ...

Pure functions and incremental estimators only: no I/O, no clock, no asyncio.
"""
