"""mesh's own tools, used by the command line and the notebooks alike (no Go counterpart):

* ``diagrams``, ``packagemap`` — the pictures and the package map, generated from the code;
* ``run_notebooks`` — re-execute the notebooks in place;
* ``textview`` — fixed-width text (``TextView``, ``table``) that both the CLI and Jupyter print;
* ``timeline``, ``push_view``, ``push_timeline``, ``validation_view`` — the rows of
  ``mesh replay --show events|mesh|pushes|validation``, which the notebooks show too.

They sit above bootstrap and xds and below ``mesh.cli``; ``mesh.teach`` (notebooks only) builds on
them, and nothing in mesh imports ``mesh.teach``.
"""
