"""Skills: the file format (``format``), the skills kinebridge ships and how each resolves its task
parameters into frames (``registry``), and the pouring skill itself (``pour``)."""
