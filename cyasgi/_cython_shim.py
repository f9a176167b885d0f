"""What the one-source modules use of Cython's ``cython`` module when Cython is not installed (a pure
install, PyPy): they only ask whether they were compiled."""

compiled = False
