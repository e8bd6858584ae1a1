"""Stevie runtime: settings, logging, metrics, clocks, service lifecycle, embedded infra, CLI."""
