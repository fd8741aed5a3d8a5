"""Interfaces: where the shared context lives. One module per interface.

Network clients are optional extras: their modules import the client only when an
interface is created, so importing this package never needs them.
"""
