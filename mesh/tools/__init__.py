"""Tools that work on the repository rather than on a mesh: generate the diagrams
(``diagrams``) and re-execute the notebooks (``run_notebooks``). No Go counterpart."""
