"""HTTP glue shared by the API and the stream apps (FastAPI): auth dependency, error
mapping, request parsing. Kept out of the domain package so the step runner and the
projector never import a web framework."""
