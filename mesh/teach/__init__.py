"""Display helpers for the notebooks and diagrams: code that exists only to show things.

Nothing here is part of the mini-istiod; the notebooks import what they teach from ``mesh``
and only how to draw or print it from here (DESIGN.md §7).
"""
