"""Teaching tools: the assignable units, the student copy (``minilenet assign``)
and the grader (``minilenet grade``). See the README's "For instructors"."""
