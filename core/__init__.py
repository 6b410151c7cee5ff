"""Switchyard's framework-free domain logic.

Nothing in this package imports a web framework, Reflex or a database session:
the config loader, the swap engine, the process supervisor and the stream
scrapers are plain Python and are tested as such.
"""
