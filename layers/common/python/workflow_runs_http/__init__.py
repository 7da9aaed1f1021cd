"""HTTP glue shared by the API app (FastAPI) and the stream app (plain Starlette): who the
caller is, request parsing, the uniform error body, the body limit. Kept out of the domain
package so the step runner and the projector never import a web framework.

Framework-free (Starlette's `Request` only; both apps use them): `principal`, `execute_body`,
`strict_json`, `errors`, `limits`, `collaborators`. FastAPI wrappers (the API app only):
`security`, `forms`, `dependencies`, `json_body`, `app`."""
