"""Teaching tools: the assignable units, the student copy (``minilenet assign``)
and the grader (``minilenet grade``). See the README's "For instructors"."""

#: The address space (MiB) a graded unit may use by default: NumPy alone takes
#: about 300 MiB of it, and Gradescope's default container has 768 MB.
UNIT_MEMORY_MB = 640
